package io.distillery.quantizer;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.assertj.core.api.Assertions.offset;

import ai.djl.ndarray.NDManager;
import io.distillery.model.calib.CalibrationStats;
import io.distillery.model.calib.StatsAccumulator;
import io.distillery.model.config.LlamaConfig;
import io.distillery.model.config.LlamaTensorNames;
import io.distillery.model.llama.LlamaModel;
import io.distillery.model.quant.CompressedTensors;
import io.distillery.model.quant.CompressedTensorsConformance;
import io.distillery.model.safetensors.Checkpoint;
import io.distillery.model.safetensors.DType;
import io.distillery.model.safetensors.SafetensorsWriter;
import io.distillery.model.safetensors.TensorData;
import io.distillery.model.stream.CalibrationTokens;
import io.distillery.schemas.common.ArtefactRef;
import io.distillery.stage.ProgressSink;
import io.distillery.stage.StageContext;
import io.distillery.stage.StageException;
import io.distillery.stage.StageResult;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.SplittableRandom;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * w4-awq and w8a8-smoothquant on the layer-streaming executor, against the whole-model path on
 * QuantizerStageTest's tiny model (loud norm channels, grouped-query attention). Both paths read
 * statistics of one definition: the whole-model path the calibrator's artefact, written here as the
 * calibrator writes it (its histogram headroom and bins, X^T X, the samples' token ids beside), the
 * streamed path its own per-layer observation of the same batches ({@link LayerInputStatistics});
 * one pass over the original layers gives the same numbers, so the outputs must agree tensor by
 * tensor.
 */
class StreamedAwqSmoothQuantTest {

  @TempDir static Path dir;

  static Path model;
  static Path calibration;
  static Path bf16Model;
  static Path bf16Calibration;
  static Path statsOnly;

  @BeforeAll
  static void writeModelsAndCalibrations() throws IOException {
    QuantizerStageTest.dir = dir; // QuantizerStageTest's tiny model, in this class's directory
    QuantizerStageTest.writeModelAndCalibration();
    model = QuantizerStageTest.model;
    statsOnly = QuantizerStageTest.calibration; // statistics without token ids
    SplittableRandom random = new SplittableRandom(7);
    List<int[]> samples = new ArrayList<>();
    for (int i = 0; i < 10; i++) {
      int[] s = new int[i < 6 ? 40 : 17]; // two lengths: two batches of equal-length rows
      for (int t = 0; t < s.length; t++) {
        s[t] = random.nextInt(64);
      }
      samples.add(s);
    }
    CalibrationTokens tokens = new CalibrationTokens(samples);
    calibration = calibrate(model, tokens, "calibration");

    // the same weights stored as BF16, calibrated on themselves
    LlamaConfig config = QuantizerStageTest.config.withTorchDtype("bfloat16");
    bf16Model = Files.createDirectories(dir.resolve("bf16"));
    Map<String, TensorData> tensors = new LinkedHashMap<>();
    try (Checkpoint f32 = Checkpoint.open(model)) {
      for (Map.Entry<String, long[]> e : LlamaTensorNames.shapes(config).entrySet()) {
        tensors.put(
            e.getKey(), TensorData.ofFloats(DType.BF16, e.getValue(), f32.floats(e.getKey())));
      }
    }
    SafetensorsWriter.write(
        bf16Model.resolve(Checkpoint.SINGLE_FILE), tensors, Map.of("format", "pt"));
    config.write(bf16Model);
    bf16Calibration = calibrate(bf16Model, tokens, "bf16-calibration");
  }

  /**
   * The calibrator's artefact for {@code m}: statistics of every linear input over the samples'
   * batches (the calibrator's histogram headroom and default bins, X^T X) and the token ids.
   */
  static Path calibrate(Path m, CalibrationTokens tokens, String name) throws IOException {
    Path out = Files.createDirectories(dir.resolve(name));
    StatsAccumulator accumulator =
        new StatsAccumulator(
            LayerInputStatistics.DEFAULT_BINS, LayerInputStatistics.HIST_HEADROOM, Set.of(), true);
    try (LlamaModel loaded = LlamaModel.load(m);
        LlamaModel.ObserverRegistration reg =
            loaded.observeLinearInputs(
                (module, input) ->
                    accumulator.add(module, input.toFloatArray(), (int) input.getShape().get(2)));
        NDManager scope = loaded.manager().newSubManager()) {
      for (int[][] batch :
          tokens.batches(QuantizerStage.MAX_BATCH_TOKENS, QuantizerStage.MAX_BATCH_ROWS)) {
        loaded.forward(scope, batch).close();
      }
    }
    accumulator
        .result(Map.of("bins", Integer.toString(LayerInputStatistics.DEFAULT_BINS)))
        .write(out.resolve(CalibrationStats.FILE_NAME));
    tokens.write(out.resolve(CalibrationTokens.FILE_NAME));
    return out;
  }

  static StageContext<QuantizerParams> context(
      QuantizerParams params, Path m, Path calib, String name, long budget, ProgressSink sink)
      throws IOException {
    ArtefactRef ref =
        ArtefactRef.newBuilder()
            .setUri(calib.toUri().toString())
            .setSha256("0")
            .setBytes(1L)
            .setFormat(CalibrationStats.FORMAT)
            .build();
    StageContext.Input input =
        new StageContext.Input(
            "calib", "calibrator", List.of(new StageContext.Artefact(ref, calib)), Map.of());
    Path scratch = Files.createDirectories(dir.resolve("scratch-" + name));
    Path work = Files.createDirectories(dir.resolve("work-" + name));
    return new StageContext<>(null, params, m, List.of(input), scratch, work, sink, budget);
  }

  static StageContext<QuantizerParams> context(QuantizerParams params, String name)
      throws IOException {
    return context(params, model, calibration, name, 4L << 30, (p, m, metrics) -> {});
  }

  static QuantizerParams params(
      String scheme, Boolean symmetric, String inputScale, Boolean sequential, Boolean streaming) {
    return params(scheme, null, symmetric, inputScale, sequential, streaming);
  }

  /**
   * With AWQ's scale search on {@code awqGrid} exponents (null: the default 20); the tests that do
   * not compare against the whole-model path take 5, to stay quick.
   */
  static QuantizerParams params(
      String scheme,
      Integer awqGrid,
      Boolean symmetric,
      String inputScale,
      Boolean sequential,
      Boolean streaming) {
    return new QuantizerParams(
        scheme,
        16,
        null,
        null,
        null,
        awqGrid,
        null,
        symmetric,
        null,
        inputScale,
        sequential,
        streaming);
  }

  static Path output(StageResult result) {
    return result.outputs().getFirst().path();
  }

  @Test
  void shouldEqualTheWholeModelPathWhenAwqAndSmoothQuantStreamInOnePass() throws Exception {
    List<QuantizerParams> runs =
        List.of(
            params("w4-awq", null, null, false, null),
            params("w4-awq", false, null, false, null),
            params("w8a8-smoothquant", null, "auto", false, null),
            params("w8a8-smoothquant", null, "entropy", false, null));
    for (int i = 0; i < runs.size(); i++) {
      QuantizerParams streamedParams = runs.get(i);
      QuantizerParams wholeParams =
          params(
              streamedParams.scheme(),
              streamedParams.symmetric(),
              streamedParams.inputScale(),
              false,
              false);
      StageResult whole = new QuantizerStage().run(context(wholeParams, "whole-" + i));
      StageResult streamed = new QuantizerStage().run(context(streamedParams, "one-pass-" + i));
      String run = streamedParams.toString();
      assertThat(whole.metrics()).as(run).doesNotContainKey("streamed");
      assertThat(streamed.metrics())
          .as(run)
          .containsEntry("streamed", 1.0)
          .containsEntry("sequential", 0.0)
          .containsEntry("layers_quantized", 14.0);
      assertThat(QuantizerStreamingTest.maxDifference(output(whole), output(streamed)))
          .as(run)
          .isLessThanOrEqualTo(1e-6);
      assertThat(CompressedTensorsConformance.violations(output(streamed))).as(run).isEmpty();
      assertThat(Files.readString(output(streamed).resolve("config.json")))
          .as(run)
          .isEqualTo(Files.readString(output(whole).resolve("config.json")));
      if (streamedParams.scheme().equals("w4-awq")) {
        for (String metric :
            List.of(
                "awq_mean_ratio",
                "awq_clip_layers",
                "awq_clip_mean_ratio",
                "awq_clip_error_reduction")) {
          assertThat(streamed.metrics().get(metric))
              .as(run + " " + metric)
              .isCloseTo(whole.metrics().get(metric), offset(1e-9));
        }
        assertThat(streamed.metrics()).containsEntry("awq_clip_layers", 10.0);
      } else {
        assertThat(CompressedTensors.readInputScales(output(streamed)))
            .as(run)
            .hasSize(14)
            .isEqualTo(CompressedTensors.readInputScales(output(whole)));
      }
    }
  }

  @Test
  void shouldCalibrateSequentiallyAndStillWriteAValidCheckpointByDefault() throws Exception {
    for (String scheme : List.of("w4-awq", "w8a8-smoothquant")) {
      List<String> messages = new ArrayList<>();
      List<Double> percents = new ArrayList<>();
      StageResult sequential =
          new QuantizerStage()
              .run(
                  context(
                      params(scheme, 5, null, null, null, null),
                      model,
                      calibration,
                      "sequential-" + scheme,
                      4L << 30,
                      (p, m, metrics) -> {
                        percents.add(p);
                        messages.add(m);
                      }));
      StageResult onePass =
          new QuantizerStage()
              .run(context(params(scheme, 5, null, null, false, null), "compare-" + scheme));
      assertThat(sequential.metrics())
          .as(scheme)
          .containsEntry("streamed", 1.0)
          .containsEntry("sequential", 1.0);
      assertThat(percents).as(scheme).isSorted();
      assertThat(percents.getLast()).isEqualTo(100.0);
      assertThat(messages)
          .as(scheme)
          .anyMatch(
              m ->
                  m.startsWith(
                      scheme.equals("w4-awq") ? "layer 2/2: awq scales (" : "layer 2/2: smooth ("));
      assertThat(messages).as(scheme).anyMatch(m -> m.contains("eta "));
      Path a = output(sequential);
      Path b = output(onePass);
      assertThat(CompressedTensorsConformance.violations(a)).as(scheme).isEmpty();
      // layer 0 saw the original embeddings either way; layer 1 saw the quantized layer 0's
      // outputs
      String code = scheme.equals("w4-awq") ? "weight_packed" : "weight";
      try (Checkpoint x = Checkpoint.open(a);
          Checkpoint y = Checkpoint.open(b)) {
        for (String t : List.of("input_layernorm.weight", "mlp.down_proj." + code)) {
          assertThat(x.bytes("model.layers.0." + t))
              .as(scheme + " layer 0 " + t)
              .isEqualTo(y.bytes("model.layers.0." + t));
        }
        assertThat(x.bytes("model.layers.1.input_layernorm.weight"))
            .as(scheme + " layer 1 input_layernorm")
            .isNotEqualTo(y.bytes("model.layers.1.input_layernorm.weight"));
      }
      try (LlamaModel original = LlamaModel.load(model);
          LlamaModel q = CompressedTensors.loadDequantized(a)) {
        double error =
            QuantizerStageTest.relativeError(
                QuantizerStageTest.logits(original), QuantizerStageTest.logits(q));
        // the whole-model path's bounds on this model (QuantizerStageTest)
        assertThat(error)
            .as(scheme)
            .isGreaterThan(0)
            .isLessThan(scheme.equals("w4-awq") ? 0.5 : 0.15);
      }
    }
  }

  @Test
  void shouldEqualTheWholeModelPathWhenTheCheckpointIsBf16() throws Exception {
    for (String scheme : List.of("w4-awq", "w8a8-smoothquant")) {
      StageResult whole =
          new QuantizerStage()
              .run(
                  context(
                      params(scheme, 5, null, null, false, false),
                      bf16Model,
                      bf16Calibration,
                      "bf16-whole-" + scheme,
                      4L << 30,
                      (p, m, metrics) -> {}));
      StageResult streamed =
          new QuantizerStage()
              .run(
                  context(
                      params(scheme, 5, null, null, false, null),
                      bf16Model,
                      bf16Calibration,
                      "bf16-streamed-" + scheme,
                      4L << 30,
                      (p, m, metrics) -> {}));
      assertThat(streamed.metrics()).containsEntry("streamed", 1.0);
      assertThat(QuantizerStreamingTest.maxDifference(output(whole), output(streamed)))
          .as(scheme)
          .isLessThanOrEqualTo(1e-6);
      List<Path> outputs = new ArrayList<>(List.of(output(streamed)));
      if (scheme.equals("w4-awq")) { // and sequentially, the default
        outputs.add(
            output(
                new QuantizerStage()
                    .run(
                        context(
                            params(scheme, 5, null, null, null, null),
                            bf16Model,
                            bf16Calibration,
                            "bf16-sequential-" + scheme,
                            4L << 30,
                            (p, m, metrics) -> {}))));
      }
      for (Path out : outputs) {
        assertThat(CompressedTensorsConformance.violations(out)).as(scheme).isEmpty();
        assertThat(Files.readString(out.resolve("config.json")))
            .contains("\"torch_dtype\" : \"bfloat16\"");
        try (Checkpoint c = Checkpoint.open(out)) {
          assertThat(c.info("model.layers.1.post_attention_layernorm.weight").dtype())
              .isEqualTo(DType.BF16);
          assertThat(c.info("model.layers.1.mlp.up_proj.weight_scale").dtype())
              .isEqualTo(DType.BF16);
        }
      }
    }
  }

  @Test
  void shouldResumeFromTheLastFinishedLayerWhenAwqIsKilled() throws Exception {
    StageResult reference =
        new QuantizerStage()
            .run(context(params("w4-awq", 5, null, null, null, null), "awq-resume-reference"));
    List<String> afterResume = new ArrayList<>();
    boolean[] resumed = {false};
    StageContext<QuantizerParams> ctx =
        context(
            params("w4-awq", 5, null, null, null, null),
            model,
            calibration,
            "awq-resume",
            4L << 30,
            (p, m, metrics) -> {
              if (resumed[0]) {
                afterResume.add(m);
              } else if (m.startsWith("layer 1/2: done")) {
                Thread.currentThread().interrupt(); // stopped right after layer 1 was finished
              }
            });
    assertThatThrownBy(() -> new QuantizerStage().run(ctx))
        .isInstanceOf(InterruptedException.class);
    resumed[0] = true;
    StageResult result = new QuantizerStage().run(ctx);
    assertThat(result.metrics()).containsEntry("resumed_from_layer", 1.0);
    assertThat(afterResume).noneMatch(m -> m.startsWith("layer 1/2"));
    assertThat(QuantizerStreamingTest.maxDifference(output(reference), output(result))).isZero();
  }

  @Test
  void shouldRefuseBeforeAnyWorkNamingBothNumbersWhenAwqCannotFitTheBudget() throws Exception {
    for (String scheme : List.of("w4-awq", "w8a8-smoothquant")) {
      StageContext<QuantizerParams> ctx =
          context(
              params(scheme, null, null, null, null),
              model,
              calibration,
              "small-budget-" + scheme,
              100_000_000L,
              (p, m, metrics) -> {});
      assertThatThrownBy(() -> new QuantizerStage().run(ctx))
          .as(scheme)
          .isInstanceOf(StageException.Fatal.class)
          .hasMessageContaining("quantizer " + scheme + " needs ")
          .hasMessageContaining("this worker has 100.0 MB")
          .hasMessageContaining("statistics ");
      assertThat(ctx.scratch().resolve("quantized")).doesNotExist();
    }
  }

  @Test
  void shouldStreamEverySchemeWhenStreamingIsRequired() throws Exception {
    for (String scheme : Scheme.ids()) {
      StageResult result =
          new QuantizerStage()
              .run(context(params(scheme, 5, null, null, null, true), "every-" + scheme));
      assertThat(result.metrics()).as(scheme).containsEntry("streamed", 1.0);
      assertThat(CompressedTensorsConformance.violations(output(result))).as(scheme).isEmpty();
    }
  }

  @Test
  void shouldRefuseStreamingNamingTheSchemeWhenTheCalibrationHasNoTokenIds() throws Exception {
    for (String scheme : List.of("w4-awq", "w8a8-smoothquant")) {
      StageContext<QuantizerParams> ctx =
          context(
              params(scheme, null, null, null, true),
              model,
              statsOnly,
              "no-tokens-" + scheme,
              4L << 30,
              (p, m, metrics) -> {});
      assertThatThrownBy(() -> new QuantizerStage().run(ctx))
          .as(scheme)
          .isInstanceOf(StageException.Fatal.class)
          .hasMessageContaining("streamed " + scheme)
          .hasMessageContaining(CalibrationTokens.FILE_NAME);
      // without streaming asked for, the statistics alone still quantize the whole model
      StageResult whole =
          new QuantizerStage()
              .run(
                  context(
                      params(scheme, 5, null, null, null, null),
                      model,
                      statsOnly,
                      "stats-only-" + scheme,
                      4L << 30,
                      (p, m, metrics) -> {}));
      assertThat(whole.metrics()).as(scheme).doesNotContainKey("streamed");
    }
  }
}
