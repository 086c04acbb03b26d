package io.distillery.distiller;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import io.distillery.distiller.data.DataFiles;
import io.distillery.distiller.data.DistillData;
import io.distillery.distiller.student.ChannelImportance;
import io.distillery.distiller.student.StudentInit;
import io.distillery.distiller.train.DistillTrainer;
import io.distillery.model.CheckpointException;
import io.distillery.model.llama.LlamaModel;
import io.distillery.model.quant.CompressedTensors;
import io.distillery.model.safetensors.DType;
import io.distillery.model.tasks.ExactMatch;
import io.distillery.model.tasks.TaskExample;
import io.distillery.model.tasks.TaskJsonl;
import io.distillery.model.tasks.TaskKind;
import io.distillery.model.tasks.TaskSettings;
import io.distillery.model.tokenizer.ByteTokenizer;
import io.distillery.stage.ArtefactFormats;
import io.distillery.stage.Stage;
import io.distillery.stage.StageContext;
import io.distillery.stage.StageException;
import io.distillery.stage.StagePlugin;
import io.distillery.stage.StageResult;
import java.io.IOException;
import java.net.URI;
import java.nio.file.FileSystemNotFoundException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The distiller stage. Data: {@link DistillData} (task-suite prompts, user JSONL, misfires; teacher
 * traces where a prompt has no answer). Student: an "hf-checkpoint"/"hf-llama" input (e.g. the
 * deployed student of a re-distillation run, or an upstream pruner's output), else the {@code
 * studentUri} checkpoint, else the {@code student} shape sliced from the teacher ({@link
 * StudentInit}). Training: {@link DistillTrainer}, resumable from {@code workDir()/distill}, so a
 * retried job continues from its last checkpoint. Output: an F32 HF checkpoint with the teacher's
 * tokenizer files (the worker host adds the lineage manifest); metrics include both sizes, the
 * losses, and the student's and teacher's exact match on the held-out sample.
 */
@StagePlugin(
    name = "distiller",
    params = DistillerParams.class,
    description = "Hinton knowledge distillation of a Llama teacher into a smaller student")
public final class DistillerStage implements Stage<DistillerParams> {

  public static final String FORMAT = ArtefactFormats.HF_LLAMA;

  /** Formats accepted as a student checkpoint input. */
  public static final List<String> STUDENT_FORMATS = List.of(ArtefactFormats.HF_CHECKPOINT, FORMAT);

  public static final String DATASET_FORMAT = "dataset";
  public static final String MISFIRES_FORMAT = ArtefactFormats.MISFIRES_JSONL;
  private static final List<String> TOKENIZER_FILES =
      List.of(ByteTokenizer.TOKENIZER_FILE, ByteTokenizer.CONFIG_FILE, "special_tokens_map.json");
  private static final Logger LOG = LoggerFactory.getLogger(DistillerStage.class);
  private static final ObjectMapper JSON =
      new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT);

  @Override
  public StageResult run(StageContext<DistillerParams> ctx)
      throws StageException, InterruptedException {
    DistillerParams p = ctx.params();
    if (ctx.model() == null) {
      throw StageException.fatal("the distiller needs a teacher model: the run has none");
    }
    String runId = ctx.job() == null ? "" : ctx.job().getRunId();
    Path out = ctx.scratch().resolve("student");
    Map<String, Double> metrics = new LinkedHashMap<>();
    try (LlamaModel teacher = LlamaModel.load(ctx.model())) {
      ctx.progress(0, "preparing data");
      DistillData data = data(ctx, teacher);
      if (data.train().isEmpty()) {
        throw StageException.fatal(
            "the dataset is empty: set source: tasks, a dataset param, or give a \"dataset\" or "
                + "\"misfires-jsonl\" input with usable rows (misfire rows need split=train and an expected answer; "
                + data.misfiresSkipped()
                + " were left out)");
      }
      LOG.info(
          "distiller data runId={} train={} heldout={} taskPrompts={} fileRows={} misfireRows={} traces={}",
          runId,
          data.train().size(),
          data.heldout().size(),
          data.taskPrompts(),
          data.fileRows(),
          data.misfireRows(),
          data.traces());
      Path init = studentInit(ctx, teacher, data.train());
      Path checkpoints = ctx.workDir().resolve("distill");
      try (LlamaModel student = CompressedTensors.loadAny(init)) {
        if (student.config().vocabSize() != teacher.config().vocabSize()) {
          throw StageException.fatal(
              "the student checkpoint's vocabulary ("
                  + student.config().vocabSize()
                  + ") differs from the teacher's ("
                  + teacher.config().vocabSize()
                  + "): logits cannot be distilled");
        }
        DistillTrainer.Result r =
            new DistillTrainer(p)
                .train(
                    teacher,
                    student,
                    data.train(),
                    data.weights(),
                    data.heldout(),
                    checkpoints,
                    progress -> report(ctx, progress));
        ctx.progress(99, "scoring the student on " + data.heldout().size() + " held-out prompts");
        student.save(out, DType.F32);
        copyTokenizer(ctx.model(), out);
        long studentParams = count(student);
        long teacherParams = count(teacher);
        metrics.put("studentParams", (double) studentParams);
        metrics.put("teacherParams", (double) teacherParams);
        metrics.put("compression", (double) teacherParams / studentParams);
        metrics.put("trainLoss", r.trainLoss());
        if (!Double.isNaN(r.validationLoss())) {
          metrics.put("valLoss", r.validationLoss());
        }
        metrics.put("steps", (double) r.steps());
        metrics.put("tokens", (double) r.tokens());
        metrics.put("resumedFrom", (double) r.resumedFrom());
        metrics.put("stoppedEarly", r.stoppedEarly() ? 1.0 : 0.0);
        metrics.put("trainExamples", (double) data.train().size());
        metrics.put("misfireRows", (double) data.misfireRows());
        metrics.put("traces", (double) data.traces());
        if (!data.heldout().isEmpty()) {
          int maxNew = maxNewTokens(data.heldout());
          double studentEm =
              ExactMatch.score(student, ByteTokenizer.instance(), data.heldout(), maxNew);
          double teacherEm =
              ExactMatch.score(teacher, ByteTokenizer.instance(), data.heldout(), maxNew);
          metrics.put("studentExactMatch", studentEm);
          metrics.put("teacherExactMatch", teacherEm);
          metrics.put("heldoutExamples", (double) data.heldout().size());
          if (teacherEm > 0) {
            metrics.put("retention", studentEm / teacherEm);
          }
        }
        LOG.info("distiller finished runId={} metrics={}", runId, metrics);
      }
    } catch (StageException e) {
      throw e;
    } catch (DataFiles.BadDataException e) {
      throw StageException.fatal("bad distillation data: " + e.getMessage(), e);
    } catch (IllegalArgumentException | IllegalStateException | CheckpointException e) {
      throw StageException.fatal("distiller failed: " + e.getMessage(), e);
    } catch (IOException e) {
      throw StageException.retryable("cannot read or write the model: " + e.getMessage(), e);
    }
    return StageResult.of(List.of(new StageResult.Output(out, FORMAT)), metrics);
  }

  private static DistillData data(StageContext<DistillerParams> ctx, LlamaModel teacher)
      throws IOException, DataFiles.BadDataException, StageException {
    DistillerParams p = ctx.params();
    List<Path> prompts = new ArrayList<>();
    if (p.dataset() != null) {
      Path file = localPath(p.dataset(), "dataset");
      if (!Files.isRegularFile(file)) {
        throw StageException.fatal("dataset " + p.dataset() + " is not a readable file");
      }
      prompts.add(file);
    }
    for (StageContext.Artefact a : ctx.artefacts(DATASET_FORMAT)) {
      prompts.addAll(DataFiles.jsonlFiles(a.path()));
    }
    List<Path> misfires =
        ctx.artefacts(MISFIRES_FORMAT).stream().map(StageContext.Artefact::path).toList();
    TaskSettings settings;
    try {
      settings = TaskSettings.forModel(ctx.model());
    } catch (IOException e) {
      throw StageException.fatal("cannot draw task prompts for the teacher: " + e.getMessage(), e);
    }
    return DistillData.build(p, teacher, taskKinds(ctx), settings, prompts, misfires);
  }

  /** The {@code tasks} param, else the kinds of the teacher's held-out split, else every kind. */
  static List<TaskKind> taskKinds(StageContext<DistillerParams> ctx) throws IOException {
    if (ctx.params().tasks() != null) {
      return ctx.params().tasks().stream().map(TaskKind::of).toList();
    }
    Path test = ctx.model().resolve("test.jsonl");
    if (Files.isRegularFile(test)) {
      List<TaskKind> kinds =
          TaskJsonl.read(test).stream()
              .map(e -> TaskKind.of(e.task()))
              .distinct()
              .sorted()
              .toList();
      if (!kinds.isEmpty()) {
        return kinds;
      }
    }
    return List.of(TaskKind.values());
  }

  /** The directory the student starts from; a shape is sliced once into the work directory. */
  private static Path studentInit(
      StageContext<DistillerParams> ctx, LlamaModel teacher, List<TaskExample> train)
      throws IOException, StageException {
    DistillerParams p = ctx.params();
    List<StageContext.Artefact> given = new ArrayList<>();
    for (String format : STUDENT_FORMATS) {
      given.addAll(ctx.artefacts(format));
    }
    if (given.size() > 1) {
      throw StageException.fatal(
          "several student checkpoints are inputs ("
              + given.stream().map(a -> a.ref().getUri()).toList()
              + "): give the distiller one");
    }
    if (!given.isEmpty()) {
      if (p.student() != null) {
        LOG.info(
            "distiller student shape ignored: a student checkpoint is an input uri={}",
            given.getFirst().ref().getUri());
      }
      return given.getFirst().path();
    }
    if (p.studentUri() != null) {
      Path dir = localPath(p.studentUri(), "studentUri");
      if (!Files.isRegularFile(dir.resolve("config.json"))) {
        throw StageException.fatal(
            "studentUri " + p.studentUri() + " is not an HF checkpoint directory (no config.json)");
      }
      return dir;
    }
    if (p.student() == null) {
      throw StageException.fatal(
          "no student: give the student param (layers, hidden, heads, kvHeads, intermediate), "
              + "studentUri, or an hf-checkpoint input");
    }
    p.student().requireFits(teacher.config());
    Path init = ctx.workDir().resolve("student-init");
    if (!Files.exists(init.resolve("config.json"))) {
      Path tmp = ctx.workDir().resolve("student-init.tmp");
      ChannelImportance importance =
          "first".equals(p.slicing())
              ? null
              : ChannelImportance.measure(teacher, calibration(train));
      StudentInit.write(teacher, p.student(), tmp, importance);
      Files.move(tmp, init, StandardCopyOption.ATOMIC_MOVE);
    }
    return init;
  }

  /**
   * The first training sequences ({@code <s> prompt target </s>}) as calibration for the activation
   * importance.
   */
  public static List<int[]> calibration(List<TaskExample> train) {
    List<int[]> out = new ArrayList<>();
    ByteTokenizer tokenizer = ByteTokenizer.instance();
    for (TaskExample e :
        train.subList(0, Math.min(train.size(), DistillerParams.CALIBRATION_SEQUENCES))) {
      out.add(tokenizer.encode(e.prompt() + e.answer(), true, true));
    }
    return out;
  }

  private static Path localPath(String uri, String param) throws StageException {
    try {
      return uri.startsWith("file:") ? Path.of(URI.create(uri)) : Path.of(uri);
    } catch (IllegalArgumentException | FileSystemNotFoundException e) {
      throw StageException.fatal(param + " " + uri + " is not a local path or file: URI", e);
    }
  }

  private static void report(StageContext<DistillerParams> ctx, DistillTrainer.Progress g) {
    Map<String, Double> m = new LinkedHashMap<>();
    m.put("step", (double) g.step());
    m.put("tokens", (double) g.tokens());
    String message;
    if (g.resumed()) {
      m.put("resumedFrom", (double) g.step());
      message = String.format(Locale.ROOT, "resumed from step %d/%d", g.step(), g.total());
    } else {
      m.put("loss", g.loss());
      m.put("tokensPerSecond", g.tokensPerSecond());
      m.put("etaSeconds", g.etaSeconds());
      m.put("lr", g.learningRate());
      message =
          String.format(
              Locale.ROOT,
              "step %d/%d loss=%.4f tok/s=%.0f eta=%.0fs",
              g.step(),
              g.total(),
              g.loss(),
              g.tokensPerSecond(),
              g.etaSeconds());
      if (!Double.isNaN(g.validationLoss())) {
        m.put("valLoss", g.validationLoss());
        message += String.format(Locale.ROOT, " val=%.4f", g.validationLoss());
      }
    }
    ctx.progress(Math.min(98.0, 98.0 * g.step() / g.total()), message, m);
  }

  private static void copyTokenizer(Path teacher, Path out) throws IOException {
    boolean any = false;
    for (String name : TOKENIZER_FILES) {
      if (Files.exists(teacher.resolve(name))) {
        Files.copy(teacher.resolve(name), out.resolve(name), StandardCopyOption.REPLACE_EXISTING);
        any = true;
      }
    }
    if (!any) {
      ByteTokenizer.instance()
          .save(out); // the model core's tokenizer is the one the teacher was read with
    }
  }

  /** Room for the longest answer plus {@code </s>} and one spare token. */
  private static int maxNewTokens(List<TaskExample> examples) {
    int longest = 0;
    for (TaskExample e : examples) {
      longest = Math.max(longest, ByteTokenizer.instance().encode(e.answer()).length);
    }
    return longest + 2;
  }

  static long count(LlamaModel m) {
    long n = 0;
    for (var a : m.parameters().values()) {
      n += a.size();
    }
    return n;
  }
}
