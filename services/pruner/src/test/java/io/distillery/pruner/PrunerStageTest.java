package io.distillery.pruner;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.distillery.model.calib.CalibrationStats;
import io.distillery.model.llama.LlamaModel;
import io.distillery.model.safetensors.DType;
import io.distillery.schemas.common.ArtefactRef;
import io.distillery.schemas.job.StageJob;
import io.distillery.stage.StageContext;
import io.distillery.stage.StageException;
import io.distillery.stage.StageParams;
import io.distillery.stage.StageRegistry;
import io.distillery.stage.StageResult;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class PrunerStageTest {

  @TempDir static Path tmp;

  static Path modelDir;
  static Path calibFile;

  @BeforeAll
  static void tinyModelAndCalibration() throws Exception {
    modelDir = tmp.resolve("model");
    calibFile = tmp.resolve("calib").resolve(CalibrationStats.FILE_NAME);
    Files.createDirectories(calibFile.getParent());
    try (LlamaModel model = LlamaModel.random(TinyLlama.config(2), 9)) {
      model.save(modelDir, DType.F32);
      TinyLlama.calibrate(model, 2).write(calibFile);
    }
  }

  static StageContext<PrunerParams> context(
      String paramsJson, boolean withCalibration, List<Double> progress, String scratch)
      throws Exception {
    PrunerParams params = StageParams.bind("pruner", paramsJson, PrunerParams.class);
    ArtefactRef model =
        ArtefactRef.newBuilder()
            .setUri(modelDir.toUri().toString())
            .setSha256("ab".repeat(32))
            .setBytes(1)
            .setFormat("hf-llama")
            .build();
    StageJob job =
        StageJob.newBuilder()
            .setRunId("run-1")
            .setJobId("run-1/prune")
            .setAttempt(1)
            .setStage("pruner")
            .setNode("prune")
            .setParams(paramsJson)
            .setModel(model)
            .setTimeoutMs(60_000)
            .setDispatchedAt(Instant.now())
            .build();
    List<StageContext.Input> inputs = new ArrayList<>();
    if (withCalibration) {
      ArtefactRef ref =
          ArtefactRef.newBuilder()
              .setUri(calibFile.getParent().toUri().toString())
              .setSha256("cd".repeat(32))
              .setBytes(1)
              .setFormat(CalibrationStats.FORMAT)
              .build();
      inputs.add(
          new StageContext.Input(
              "calibrate",
              "calibrator",
              List.of(new StageContext.Artefact(ref, calibFile.getParent())),
              Map.of()));
    }
    Path dir = Files.createDirectories(tmp.resolve(scratch));
    return new StageContext<>(
        job, params, modelDir, inputs, dir, dir, (pct, msg, m) -> progress.add(pct));
  }

  @Test
  void shouldWriteTwoFourSparseCheckpointWhenWandaRuns() throws Exception {
    List<Double> progress = new ArrayList<>();
    StageResult result =
        new PrunerStage()
            .run(context("{\"method\":\"wanda\",\"pattern\":\"2:4\"}", true, progress, "wanda"));
    Path out = result.outputs().getFirst().path();
    assertThat(result.outputs().getFirst().format()).isEqualTo("hf-llama");
    assertThat(result.metrics().get("sparsity")).isEqualTo(0.5);
    assertThat(result.metrics().get("layers_pruned")).isEqualTo(14.0); // 2 x 7, lm_head excluded
    assertThat(result.metrics().get("nonzero_params_after"))
        .isLessThan(result.metrics().get("params_before"));
    assertThat(progress).hasSizeGreaterThanOrEqualTo(3).isSorted();
    // compressed-tensors config/dense.py: a dense-stored 2:4 model declares its structure in
    // sparsity_config
    JsonNode sparsity =
        new ObjectMapper()
            .readTree(out.resolve("config.json").toFile())
            .at("/quantization_config/sparsity_config");
    assertThat(sparsity.path("format").asText()).isEqualTo("dense");
    assertThat(sparsity.path("sparsity_structure").asText()).isEqualTo("2:4");
    assertThat(sparsity.path("targets")).hasSize(14);
    assertThat(io.distillery.model.quant.CompressedTensorsConformance.violations(out)).isEmpty();
    try (LlamaModel pruned = LlamaModel.load(out)) {
      float[] down = pruned.linearWeight("model.layers.1.mlp.down_proj");
      for (int g = 0; g < down.length; g += 4) {
        int zeros = 0;
        for (int j = g; j < g + 4; j++) {
          zeros += down[j] == 0f ? 1 : 0;
        }
        assertThat(zeros).isEqualTo(2);
      }
      float[] head = pruned.linearWeight("lm_head");
      assertThat(head).doesNotContain(0f);
      assertThat(TinyLlama.logits(pruned, TinyLlama.tokens(1, 4, 2))).hasSize(4 * 64);
    }
  }

  @Test
  void shouldReachUnstructuredSparsityWhenSparseGptRuns() throws Exception {
    StageResult result =
        new PrunerStage()
            .run(
                context(
                    "{\"method\":\"sparsegpt\",\"sparsity\":0.6,\"blockSize\":16}",
                    true,
                    new ArrayList<>(),
                    "sgpt"));
    // widths 32 and 48: round(0.6 * 16) = 10 of every 16 per row
    assertThat(result.metrics().get("sparsity"))
        .isCloseTo(0.625, org.assertj.core.api.Assertions.within(1e-9));
  }

  @Test
  void shouldWriteSmallerConfigWhenStructured() throws Exception {
    StageResult result =
        new PrunerStage()
            .run(
                context(
                    "{\"method\":\"structured\",\"headFraction\":0.5,\"mlpFraction\":0.5,\"dropLayers\":1}",
                    true,
                    new ArrayList<>(),
                    "structured"));
    assertThat(result.metrics().get("num_hidden_layers")).isEqualTo(1.0);
    assertThat(result.metrics().get("params_after"))
        .isLessThan(result.metrics().get("params_before"));
    try (LlamaModel small = LlamaModel.load(result.outputs().getFirst().path())) {
      assertThat(small.config().numKeyValueHeads()).isEqualTo(1);
      assertThat(small.config().numAttentionHeads()).isEqualTo(2);
      assertThat(small.config().intermediateSize()).isEqualTo(24);
      assertThat(TinyLlama.logits(small, TinyLlama.tokens(1, 3, 5))).hasSize(3 * 64);
    }
  }

  @Test
  void shouldLeaveExcludedLayersDenseWhenExcludeNamesASuffix() throws Exception {
    StageResult result =
        new PrunerStage()
            .run(
                context(
                    "{\"method\":\"magnitude\",\"sparsity\":0.5,\"exclude\":[\"down_proj\",\"lm_head\"]}",
                    false,
                    new ArrayList<>(),
                    "exclude"));
    assertThat(result.metrics().get("layers_pruned")).isEqualTo(12.0); // 2 x 6
    try (LlamaModel pruned = LlamaModel.load(result.outputs().getFirst().path());
        LlamaModel dense = LlamaModel.load(modelDir)) {
      assertThat(pruned.linearWeight("model.layers.0.mlp.down_proj"))
          .containsExactly(dense.linearWeight("model.layers.0.mlp.down_proj"));
      assertThat(zeros(pruned.linearWeight("model.layers.0.mlp.up_proj"))).isEqualTo(48 * 16);
    }
  }

  static int zeros(float[] w) {
    int n = 0;
    for (float v : w) {
      n += v == 0f ? 1 : 0;
    }
    return n;
  }

  @Test
  void shouldFailFatallyWhenWandaHasNoCalibration() throws Exception {
    assertThatThrownBy(
            () ->
                new PrunerStage()
                    .run(
                        context(
                            "{\"method\":\"wanda\",\"sparsity\":0.5}",
                            false,
                            new ArrayList<>(),
                            "nocalib")))
        .isInstanceOf(StageException.Fatal.class)
        .hasMessageContaining("calibrat");
  }

  @Test
  void shouldFailFatallyNamingBlockSizeWhenNotMultipleOfFour() throws Exception {
    assertThatThrownBy(
            () ->
                new PrunerStage()
                    .run(
                        context(
                            "{\"method\":\"sparsegpt\",\"pattern\":\"2:4\",\"blockSize\":6}",
                            true,
                            new ArrayList<>(),
                            "bs")))
        .isInstanceOf(StageException.Fatal.class)
        .hasMessageContaining("blockSize");
  }

  @Test
  void shouldFailFatallyNamingArchitectureWhenModelIsNotLlama() throws Exception {
    Path gpt2 = Files.createDirectories(tmp.resolve("gpt2"));
    Files.writeString(
        gpt2.resolve("config.json"),
        "{\"architectures\": [\"GPT2LMHeadModel\"], "
            + "\"model_type\": \"gpt2\", \"n_embd\": 32}");
    StageContext<PrunerParams> ctx =
        context(
            "{\"method\":\"magnitude\",\"pattern\":\"2:4\"}",
            false,
            new ArrayList<>(),
            "gpt2-scratch");
    StageContext<PrunerParams> onGpt2 =
        new StageContext<>(
            ctx.job(),
            ctx.params(),
            gpt2,
            ctx.inputs(),
            ctx.scratch(),
            ctx.workDir(),
            ctx.progressSink());
    assertThatThrownBy(() -> new PrunerStage().run(onGpt2))
        .isInstanceOf(StageException.Fatal.class)
        .hasMessageContaining("GPT2LMHeadModel");
  }

  @Test
  void shouldBeFoundByNameWhenRegistryLoadsPlugins() {
    var descriptor = StageRegistry.discover().get("pruner");
    assertThat(descriptor.params()).isEqualTo(PrunerParams.class);
    assertThat(descriptor.instantiate()).isInstanceOf(PrunerStage.class);
  }
}
