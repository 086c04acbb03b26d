package io.distillery.distiller;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import io.distillery.distiller.student.StudentInit;
import io.distillery.distiller.train.DistillTrainer;
import io.distillery.platform.model.llama.LlamaModel;
import io.distillery.platform.model.safetensors.DType;
import io.distillery.platform.stage.Stage;
import io.distillery.platform.stage.StageContext;
import io.distillery.platform.stage.StageException;
import io.distillery.platform.stage.StagePlugin;
import io.distillery.platform.stage.StageResult;
import io.distillery.platform.tasks.TaskExample;
import io.distillery.platform.tasks.TaskJsonl;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The distiller stage: student from the teacher (layer selection + width slicing) or an upstream "hf-llama" artefact,
 * data from "dataset" JSONL artefacts (a file whose name contains "misfire" weighted by misfireWeight), KD training
 * resumable from {@code workDir()/distill}, output an F32 "hf-llama" checkpoint with distillery-manifest.json.
 */
@StagePlugin(name = "distiller", params = DistillerParams.class,
    description = "Hinton knowledge distillation of a Llama teacher into a smaller student")
public final class DistillerStage implements Stage<DistillerParams> {

  public static final String FORMAT = "hf-llama";
  public static final String MANIFEST = "distillery-manifest.json";
  private static final ObjectMapper JSON = new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT);

  @Override
  public StageResult run(StageContext<DistillerParams> ctx) throws StageException, InterruptedException {
    DistillerParams p = ctx.params();
    if (ctx.model() == null) {
      throw StageException.fatal("the distiller needs a teacher model: the run has none");
    }
    List<TaskExample> data = new ArrayList<>();
    List<Double> weights = new ArrayList<>();
    try {
      for (StageContext.Artefact a : ctx.artefacts("dataset")) {
        Path file = Files.isDirectory(a.path()) ? firstJsonl(a.path()) : a.path();
        double w = file.getFileName().toString().contains("misfire") ? p.misfireWeight() : 1.0;
        for (TaskExample e : TaskJsonl.read(file)) {
          data.add(e);
          weights.add(w);
        }
      }
    } catch (IOException e) {
      throw StageException.retryable("cannot read the dataset: " + e.getMessage(), e);
    }
    if (data.isEmpty()) {
      throw StageException.fatal("the dataset is empty: give the distiller a non-empty \"dataset\" input");
    }
    Path workDir = ctx.workDir();
    Path out = ctx.scratch().resolve("student");
    Map<String, Double> metrics = new LinkedHashMap<>();
    try (LlamaModel teacher = LlamaModel.load(ctx.model())) {
      Path init = workDir.resolve("student-init");
      List<StageContext.Artefact> given = ctx.artefacts(FORMAT);
      if (!given.isEmpty()) {
        init = given.getLast().path();
      } else if (p.student() == null) {
        throw StageException.fatal("student is required when no hf-llama student artefact is given");
      } else if (!Files.exists(init.resolve("config.json"))) {
        StudentInit.write(teacher, p.student(), init);
      }
      try (LlamaModel student = LlamaModel.load(init)) {
        double[] w = weights.stream().mapToDouble(Double::doubleValue).toArray();
        List<Double> losses = new DistillTrainer(p).train(teacher, student, data, w, workDir.resolve("distill"),
            (step, total, loss, tps) -> {
              if (Thread.interrupted()) {
                throw new InterruptedException("distillation interrupted at step " + step);
              }
              ctx.progress(100.0 * step / total, "step " + step + "/" + total,
                  Map.of("step", (double) step, "loss", loss, "tokensPerSecond", tps));
            });
        student.save(out, DType.F32);
        for (String name : List.of("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")) {
          if (Files.exists(ctx.model().resolve(name))) {
            Files.copy(ctx.model().resolve(name), out.resolve(name), java.nio.file.StandardCopyOption.REPLACE_EXISTING);
          }
        }
        metrics.put("studentParams", (double) count(student));
        metrics.put("teacherParams", (double) count(teacher));
        metrics.put("finalLoss", losses.isEmpty() ? Double.NaN : losses.getLast());
      }
      Map<String, Object> manifest = new LinkedHashMap<>();
      if (ctx.job() != null) {
        manifest.put("teacher", Map.of("sha256", String.valueOf(ctx.job().getModel().getSha256())));
        manifest.put("jobId", ctx.job().getJobId());
      }
      manifest.put("stage", "distiller");
      manifest.put("params", p);
      manifest.put("metrics", metrics);
      JSON.writeValue(out.resolve(MANIFEST).toFile(), manifest);
    } catch (IllegalArgumentException | IllegalStateException e) {
      throw StageException.fatal("distiller failed: " + e.getMessage(), e);
    } catch (InterruptedException e) {
      throw e;
    } catch (IOException e) {
      throw StageException.retryable("cannot read or write the model: " + e.getMessage(), e);
    } catch (StageException e) {
      throw e;
    } catch (Exception e) {
      throw StageException.retryable("distillation failed: " + e.getMessage(), e);
    }
    return StageResult.of(List.of(new StageResult.Output(out, FORMAT)), metrics);
  }

  private static long count(LlamaModel m) {
    long n = 0;
    for (var a : m.parameters().values()) {
      n += a.size();
    }
    return n;
  }

  private static Path firstJsonl(Path dir) throws IOException {
    try (var s = Files.list(dir)) {
      return s.filter(f -> f.toString().endsWith(".jsonl")).sorted().findFirst()
          .orElseThrow(() -> new IOException("no .jsonl file in " + dir));
    }
  }
}
