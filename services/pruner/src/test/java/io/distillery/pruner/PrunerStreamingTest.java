package io.distillery.pruner;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import ai.djl.ndarray.NDManager;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.distillery.model.calib.CalibrationStats;
import io.distillery.model.calib.StatsAccumulator;
import io.distillery.model.llama.LlamaModel;
import io.distillery.model.safetensors.Checkpoint;
import io.distillery.model.safetensors.DType;
import io.distillery.model.stream.CalibrationTokens;
import io.distillery.schemas.common.ArtefactRef;
import io.distillery.stage.ProgressSink;
import io.distillery.stage.StageContext;
import io.distillery.stage.StageException;
import io.distillery.stage.StageParams;
import io.distillery.stage.StageResult;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.SplittableRandom;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The pruner on the layer-streaming executor, against the whole-model path on a tiny model whose
 * calibration artefact carries statistics and the samples' token ids, as the calibrator writes it.
 */
class PrunerStreamingTest {

  @TempDir static Path dir;

  static Path model;
  static Path bf16Model;
  static Path calibration;

  @BeforeAll
  static void modelAndCalibration() throws IOException {
    model = dir.resolve("model");
    bf16Model = dir.resolve("model-bf16");
    SplittableRandom random = new SplittableRandom(5);
    List<int[]> samples = new ArrayList<>();
    for (int i = 0; i < 10; i++) {
      int[] s = new int[i < 6 ? 40 : 17]; // two lengths: two batches of equal-length rows
      for (int t = 0; t < s.length; t++) {
        s[t] = random.nextInt(64);
      }
      samples.add(s);
    }
    CalibrationTokens tokens = new CalibrationTokens(samples);
    calibration = Files.createDirectories(dir.resolve("calibration"));
    StatsAccumulator accumulator = new StatsAccumulator(16, 1.1f, Set.of(), true);
    try (LlamaModel m = LlamaModel.random(TinyLlama.config(2), 9)) {
      m.save(model, DType.F32);
      m.save(bf16Model, DType.BF16);
    }
    try (LlamaModel m = LlamaModel.load(model);
        LlamaModel.ObserverRegistration reg =
            m.observeLinearInputs(
                (module, input) ->
                    accumulator.add(module, input.toFloatArray(), (int) input.getShape().get(2)));
        NDManager out = m.manager().newSubManager()) {
      for (int[][] batch :
          tokens.batches(PrunerStage.MAX_BATCH_TOKENS, PrunerStage.MAX_BATCH_ROWS)) {
        m.forward(out, batch).close();
      }
    }
    accumulator.result(Map.of()).write(calibration.resolve(CalibrationStats.FILE_NAME));
    tokens.write(calibration.resolve(CalibrationTokens.FILE_NAME));
  }

  static StageContext<PrunerParams> context(
      String paramsJson, Path input, String name, long budget, ProgressSink sink) throws Exception {
    PrunerParams params = StageParams.bind("pruner", paramsJson, PrunerParams.class);
    ArtefactRef ref =
        ArtefactRef.newBuilder()
            .setUri(calibration.toUri().toString())
            .setSha256("0")
            .setBytes(1L)
            .setFormat(CalibrationStats.FORMAT)
            .build();
    StageContext.Input calib =
        new StageContext.Input(
            "calib", "calibrator", List.of(new StageContext.Artefact(ref, calibration)), Map.of());
    Path scratch = Files.createDirectories(dir.resolve("scratch-" + name));
    Path work = Files.createDirectories(dir.resolve("work-" + name));
    return new StageContext<>(null, params, input, List.of(calib), scratch, work, sink, budget);
  }

  static StageContext<PrunerParams> context(String paramsJson, String name) throws Exception {
    return context(paramsJson, model, name, 4L << 30, (p, m, metrics) -> {});
  }

  static Path run(String paramsJson, String name) throws Exception {
    return new PrunerStage().run(context(paramsJson, name)).outputs().getFirst().path();
  }

  /** Every tensor of both checkpoints (same names and dtypes) read as floats: max |a - b|. */
  static double maxDifference(Path a, Path b) throws IOException {
    double max = 0;
    try (Checkpoint x = Checkpoint.open(a);
        Checkpoint y = Checkpoint.open(b)) {
      assertThat(y.tensorNames()).isEqualTo(x.tensorNames());
      for (String name : x.tensorNames()) {
        assertThat(y.info(name).dtype()).as(name).isEqualTo(x.info(name).dtype());
        float[] u = x.floats(name);
        float[] v = y.floats(name);
        assertThat(v).as(name).hasSameSizeAs(u);
        for (int i = 0; i < u.length; i++) {
          max = Math.max(max, Math.abs(u[i] - v[i]));
        }
      }
    }
    return max;
  }

  static JsonNode config(Path out) throws IOException {
    return new ObjectMapper().readTree(out.resolve("config.json").toFile());
  }

  @Test
  void shouldEqualTheWholeModelPathWhenNotSequential() throws Exception {
    List<String> methods =
        List.of(
            "\"method\":\"magnitude\",\"sparsity\":0.5",
            "\"method\":\"magnitude\",\"pattern\":\"2:4\"",
            "\"method\":\"wanda\",\"sparsity\":0.6",
            "\"method\":\"wanda\",\"pattern\":\"2:4\"",
            "\"method\":\"sparsegpt\",\"pattern\":\"2:4\",\"blockSize\":16",
            "\"method\":\"sparsegpt\",\"sparsity\":0.5,\"blockSize\":16");
    for (int i = 0; i < methods.size(); i++) {
      String method = methods.get(i);
      StageResult whole =
          new PrunerStage()
              .run(context("{" + method + ",\"streaming\":false}", "equal-whole-" + i));
      StageResult streamed =
          new PrunerStage()
              .run(
                  context(
                      "{" + method + ",\"sequential\":false,\"streaming\":true}",
                      "equal-streamed-" + i));
      assertThat(whole.metrics()).doesNotContainKey("streamed");
      assertThat(streamed.metrics())
          .containsEntry("streamed", 1.0)
          .containsEntry("sequential", 0.0)
          .containsEntry("sparsity", whole.metrics().get("sparsity"))
          .containsEntry("nonzero_params_after", whole.metrics().get("nonzero_params_after"));
      Path a = whole.outputs().getFirst().path();
      Path b = streamed.outputs().getFirst().path();
      assertThat(maxDifference(a, b)).as(method).isLessThanOrEqualTo(1e-6);
      assertThat(config(b)).as(method).isEqualTo(config(a));
    }
  }

  @Test
  void shouldCalibrateSequentiallyAndReportEveryLayerWhenSparseGptStreams() throws Exception {
    List<String> messages = new ArrayList<>();
    List<Double> percents = new ArrayList<>();
    StageResult sequential =
        new PrunerStage()
            .run(
                context(
                    "{\"method\":\"sparsegpt\",\"pattern\":\"2:4\"}",
                    model,
                    "seq",
                    4L << 30,
                    (p, m, metrics) -> {
                      percents.add(p);
                      messages.add(m);
                    }));
    Path onePass =
        run("{\"method\":\"sparsegpt\",\"pattern\":\"2:4\",\"sequential\":false}", "one-pass");
    assertThat(sequential.metrics())
        .containsEntry("streamed", 1.0)
        .containsEntry("sequential", 1.0)
        .containsEntry("sparsity", 0.5);
    assertThat(sequential.metrics().get("forward_gflop")).isPositive();
    assertThat(sequential.metrics().get("hessian_gflop")).isPositive();
    assertThat(percents).isSorted();
    assertThat(percents.getLast()).isEqualTo(100.0);
    assertThat(messages).anyMatch(m -> m.startsWith("layer 2/2: sparsegpt mlp.down_proj ("));
    assertThat(messages).anyMatch(m -> m.contains("eta "));
    // layer 1 was calibrated on the pruned layer 0's outputs, so it differs from the one-pass
    // result; layer 0 does not
    Path a = sequential.outputs().getFirst().path();
    try (Checkpoint x = Checkpoint.open(a);
        Checkpoint y = Checkpoint.open(onePass)) {
      String layer0 = "model.layers.0.mlp.down_proj.weight";
      String layer1 = "model.layers.1.mlp.down_proj.weight";
      assertThat(x.floats(layer0)).containsExactly(y.floats(layer0));
      assertThat(x.floats(layer1)).isNotEqualTo(y.floats(layer1));
    }
  }

  @Test
  void shouldDifferFromOnePassOnlyAfterTheFirstLayerWhenWandaIsSequential() throws Exception {
    Path sequential = run("{\"method\":\"wanda\",\"sparsity\":0.5}", "wanda-seq");
    Path onePass =
        run("{\"method\":\"wanda\",\"sparsity\":0.5,\"sequential\":false}", "wanda-one-pass");
    try (Checkpoint x = Checkpoint.open(sequential);
        Checkpoint y = Checkpoint.open(onePass)) {
      assertThat(x.floats("model.layers.0.self_attn.q_proj.weight"))
          .containsExactly(y.floats("model.layers.0.self_attn.q_proj.weight"));
      boolean differs = false;
      for (String name : x.tensorNames()) {
        if (name.startsWith("model.layers.1.")) {
          differs |= !java.util.Arrays.equals(x.floats(name), y.floats(name));
        }
      }
      assertThat(differs).isTrue();
    }
  }

  @Test
  void shouldKeepBf16WhenTheInputIsBf16() throws Exception {
    StageResult result =
        new PrunerStage()
            .run(
                context(
                    "{\"method\":\"wanda\",\"pattern\":\"2:4\"}",
                    bf16Model,
                    "bf16",
                    4L << 30,
                    (p, m, metrics) -> {}));
    Path out = result.outputs().getFirst().path();
    assertThat(config(out).path("torch_dtype").asText()).isEqualTo("bfloat16");
    assertThat(config(out).at("/quantization_config/sparsity_config/sparsity_structure").asText())
        .isEqualTo("2:4");
    try (Checkpoint written = Checkpoint.open(out);
        Checkpoint input = Checkpoint.open(bf16Model)) {
      for (String name : written.tensorNames()) {
        assertThat(written.info(name).dtype()).as(name).isEqualTo(DType.BF16);
      }
      assertThat(written.bytes("lm_head.weight")).isEqualTo(input.bytes("lm_head.weight"));
      float[] down = written.floats("model.layers.1.mlp.down_proj.weight");
      for (int g = 0; g < down.length; g += 4) {
        int zeros = 0;
        for (int j = g; j < g + 4; j++) {
          zeros += down[j] == 0f ? 1 : 0;
        }
        assertThat(zeros).isEqualTo(2);
      }
    }
    try (LlamaModel pruned = LlamaModel.load(out)) {
      assertThat(TinyLlama.logits(pruned, TinyLlama.tokens(1, 4, 2))).hasSize(4 * 64);
    }
  }

  @Test
  void shouldResumeFromTheLastFinishedLayerWhenKilled() throws Exception {
    String params = "{\"method\":\"sparsegpt\",\"sparsity\":0.5,\"blockSize\":16}";
    Path reference = run(params, "resume-reference");
    List<String> afterResume = new ArrayList<>();
    boolean[] resumed = {false};
    StageContext<PrunerParams> ctx =
        context(
            params,
            model,
            "resume",
            4L << 30,
            (p, m, metrics) -> {
              if (resumed[0]) {
                afterResume.add(m);
              } else if (m.startsWith("layer 1/2: done")) {
                Thread.currentThread()
                    .interrupt(); // the worker is stopped right after layer 1 was finished
              }
            });
    assertThatThrownBy(() -> new PrunerStage().run(ctx)).isInstanceOf(InterruptedException.class);
    resumed[0] = true;
    StageResult result = new PrunerStage().run(ctx);
    assertThat(result.metrics()).containsEntry("resumed_from_layer", 1.0);
    assertThat(afterResume).anyMatch(m -> m.startsWith("layer 2/2"));
    assertThat(afterResume).noneMatch(m -> m.startsWith("layer 1/2"));
    assertThat(maxDifference(reference, result.outputs().getFirst().path())).isZero();
  }

  @Test
  void shouldRefuseBeforeAnyWorkNamingBothNumbersWhenThePlanExceedsTheBudget() throws Exception {
    for (String streaming : List.of("true", "false")) {
      StageContext<PrunerParams> ctx =
          context(
              "{\"method\":\"sparsegpt\",\"pattern\":\"2:4\",\"streaming\":" + streaming + "}",
              model,
              "small-budget-" + streaming,
              100_000_000L,
              (p, m, metrics) -> {});
      assertThatThrownBy(() -> new PrunerStage().run(ctx))
          .as("streaming " + streaming)
          .isInstanceOf(StageException.Fatal.class)
          .hasMessageContaining("pruner sparsegpt needs ")
          .hasMessageContaining("this worker has 100.0 MB")
          .hasMessageContaining("DISTILLERY_WORKER_MEMORY");
      assertThat(ctx.scratch().resolve("model")).doesNotExist();
    }
  }

  @Test
  void shouldStreamStructuredPruningToTheWholeModelPathsTensors() throws Exception {
    String structured =
        "\"method\":\"structured\",\"headFraction\":0.5,\"mlpFraction\":0.25,\"dropLayers\":1";
    StageResult whole =
        new PrunerStage().run(context("{" + structured + ",\"streaming\":false}", "st-whole"));
    StageResult streamed = new PrunerStage().run(context("{" + structured + "}", "st-streamed"));
    assertThat(streamed.metrics())
        .containsEntry("streamed", 1.0)
        .containsEntry("num_hidden_layers", 1.0)
        .containsEntry("params_after", whole.metrics().get("params_after"));
    Path a = whole.outputs().getFirst().path();
    Path b = streamed.outputs().getFirst().path();
    assertThat(maxDifference(a, b)).isZero();
    assertThat(config(b)).isEqualTo(config(a));

    StageResult bf16 =
        new PrunerStage()
            .run(context("{" + structured + "}", bf16Model, "st-bf16", 4L << 30, (p, m, x) -> {}));
    Path out = bf16.outputs().getFirst().path();
    assertThat(config(out).path("torch_dtype").asText()).isEqualTo("bfloat16");
    assertThat(config(out).path("intermediate_size").asInt()).isEqualTo(36);
    try (Checkpoint written = Checkpoint.open(out)) {
      for (String name : written.tensorNames()) {
        assertThat(written.info(name).dtype()).as(name).isEqualTo(DType.BF16);
      }
    }
  }

  @Test
  void shouldFailNamingTheTokenFileWhenStreamingIsRequiredAndTheCalibrationHasNoTokens()
      throws Exception {
    Path statsOnly = Files.createDirectories(dir.resolve("stats-only"));
    Files.copy(
        calibration.resolve(CalibrationStats.FILE_NAME),
        statsOnly.resolve(CalibrationStats.FILE_NAME));
    StageContext<PrunerParams> ctx =
        context("{\"method\":\"wanda\",\"sparsity\":0.5,\"streaming\":true}", "no-tokens");
    StageContext.Artefact artefact =
        new StageContext.Artefact(ctx.inputs().getFirst().artefacts().getFirst().ref(), statsOnly);
    StageContext<PrunerParams> withoutTokens =
        new StageContext<>(
            null,
            ctx.params(),
            ctx.model(),
            List.of(new StageContext.Input("calib", "calibrator", List.of(artefact), Map.of())),
            ctx.scratch(),
            ctx.workDir(),
            ctx.progressSink(),
            ctx.memoryBudgetBytes());
    assertThatThrownBy(() -> new PrunerStage().run(withoutTokens))
        .isInstanceOf(StageException.Fatal.class)
        .hasMessageContaining("streaming")
        .hasMessageContaining(CalibrationTokens.FILE_NAME);
  }

  @Test
  void shouldRefuseStreamingWhenLmHeadIsPruned() {
    assertThatThrownBy(
            () ->
                new PrunerStage()
                    .run(
                        context(
                            "{\"method\":\"magnitude\",\"sparsity\":0.5,\"exclude\":[],\"streaming\":true}",
                            "lm-head")))
        .isInstanceOf(StageException.Fatal.class)
        .hasMessageContaining("lm_head");
  }
}
