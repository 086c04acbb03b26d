package io.distillery.quantizer;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import ai.djl.ndarray.NDManager;
import io.distillery.model.calib.CalibrationStats;
import io.distillery.model.calib.StatsAccumulator;
import io.distillery.model.config.LlamaConfig;
import io.distillery.model.config.LlamaTensorNames;
import io.distillery.model.llama.LlamaModel;
import io.distillery.model.quant.CompressedTensors;
import io.distillery.model.quant.QuantizationScheme;
import io.distillery.model.quant.QuantizedWeight;
import io.distillery.model.safetensors.Checkpoint;
import io.distillery.model.safetensors.DType;
import io.distillery.model.safetensors.SafetensorsWriter;
import io.distillery.model.safetensors.ShardedCheckpointWriter;
import io.distillery.model.safetensors.TensorData;
import io.distillery.model.safetensors.TensorSource;
import io.distillery.model.stream.CalibrationTokens;
import io.distillery.quantizer.rtn.RoundToNearest;
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
import java.util.TreeMap;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The quantizer on the layer-streaming executor, against the whole-model path on
 * QuantizerStageTest's tiny model.
 */
class QuantizerStreamingTest {

  @TempDir static Path dir;

  static Path calibration;

  /**
   * Calibration as the calibrator writes it: statistics of the model on the samples, and the
   * samples' token ids.
   */
  @BeforeAll
  static void calibrate() throws IOException {
    QuantizerStageTest.dir =
        dir; // the same tiny model as QuantizerStageTest's, in this class's directory
    QuantizerStageTest.writeModelAndCalibration();
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
    calibration = Files.createDirectories(dir.resolve("calibration-with-tokens"));
    StatsAccumulator accumulator = new StatsAccumulator(16, 1.1f, Set.of(), true);
    try (LlamaModel m = LlamaModel.load(QuantizerStageTest.model);
        LlamaModel.ObserverRegistration reg =
            m.observeLinearInputs(
                (module, input) ->
                    accumulator.add(module, input.toFloatArray(), (int) input.getShape().get(2)));
        NDManager out = m.manager().newSubManager()) {
      for (int[][] batch :
          tokens.batches(QuantizerStage.MAX_BATCH_TOKENS, QuantizerStage.MAX_BATCH_ROWS)) {
        m.forward(out, batch).close();
      }
    }
    accumulator.result(Map.of()).write(calibration.resolve(CalibrationStats.FILE_NAME));
    tokens.write(calibration.resolve(CalibrationTokens.FILE_NAME));
  }

  static StageContext<QuantizerParams> context(
      QuantizerParams params, String name, long budget, ProgressSink sink) throws IOException {
    ArtefactRef ref =
        ArtefactRef.newBuilder()
            .setUri(calibration.toUri().toString())
            .setSha256("0")
            .setBytes(1L)
            .setFormat(CalibrationStats.FORMAT)
            .build();
    StageContext.Input input =
        new StageContext.Input(
            "calib", "calibrator", List.of(new StageContext.Artefact(ref, calibration)), Map.of());
    Path scratch = Files.createDirectories(dir.resolve("stream-scratch-" + name));
    Path work = Files.createDirectories(dir.resolve("stream-work-" + name));
    return new StageContext<>(
        null, params, QuantizerStageTest.model, List.of(input), scratch, work, sink, budget);
  }

  static StageContext<QuantizerParams> context(QuantizerParams params, String name)
      throws IOException {
    return context(params, name, 4L << 30, (p, m, metrics) -> {});
  }

  static QuantizerParams params(String scheme, Boolean sequential, Boolean streaming) {
    return new QuantizerParams(
        scheme, 16, null, null, null, null, null, null, null, null, sequential, streaming);
  }

  /**
   * Every tensor of both checkpoints read as floats (codes, scales, zero points, dense weights):
   * max |a - b|.
   */
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

  @Test
  void shouldEqualTheWholeModelPathWhenNotSequential() throws Exception {
    for (String scheme : List.of("w8-rtn", "w4-rtn", "fp8", "w4-gptq")) {
      StageResult whole =
          new QuantizerStage().run(context(params(scheme, false, false), scheme + "-whole"));
      StageResult streamed =
          new QuantizerStage().run(context(params(scheme, false, true), scheme + "-streamed"));
      assertThat(whole.metrics()).doesNotContainKey("streamed");
      assertThat(streamed.metrics())
          .containsEntry("streamed", 1.0)
          .containsEntry("sequential", 0.0);
      assertThat(
              maxDifference(
                  whole.outputs().getFirst().path(), streamed.outputs().getFirst().path()))
          .as(scheme)
          .isLessThanOrEqualTo(1e-6);
      assertThat(CompressedTensors.readQuantized(streamed.outputs().getFirst().path())).hasSize(14);
    }
  }

  @Test
  void shouldWriteTheBytesOfQuantizingTheWidenedWeightsWhenRoundToNearestStreamsABf16Model()
      throws Exception {
    // the tiny model stored as BF16: streamed RTN quantizes the stored bytes (per-channel INT8 row
    // by row) and writes each shard once; the reference widens every weight, quantizes it and
    // writes through the streaming writer, as the streamer did before
    Path bf16 = Files.createDirectories(dir.resolve("model-bf16"));
    LlamaConfig config = QuantizerStageTest.config.withTorchDtype("bfloat16");
    Map<String, TensorSource> stored = new LinkedHashMap<>();
    try (Checkpoint in = Checkpoint.open(QuantizerStageTest.model)) {
      for (String name : LlamaTensorNames.shapes(config).keySet()) {
        stored.put(name, TensorData.ofFloats(DType.BF16, in.info(name).shape(), in.floats(name)));
      }
    }
    SafetensorsWriter.write(bf16.resolve(Checkpoint.SINGLE_FILE), stored, Map.of("format", "pt"));
    config.write(bf16);
    for (String id : List.of("w8-rtn", "w4-rtn", "fp8")) {
      QuantizerParams params = params(id, null, true);
      StageResult streamed =
          new QuantizerStage()
              .run(
                  new StageContext<>(
                      null,
                      params,
                      bf16,
                      List.of(),
                      Files.createDirectories(dir.resolve("bf16-scratch-" + id)),
                      Files.createDirectories(dir.resolve("bf16-work-" + id)),
                      (p, m, metrics) -> {},
                      4L << 30));
      Scheme scheme = Scheme.of(id);
      QuantizationScheme format =
          new QuantizationScheme(scheme.kind(), params.groupSize(), false, List.of())
              .withSymmetric(params.symmetric())
              .withBits(params.bits())
              .withModelDtype(config);
      Path reference = dir.resolve("bf16-reference-" + id);
      try (Checkpoint in = Checkpoint.open(bf16);
          ShardedCheckpointWriter writer = new ShardedCheckpointWriter(reference)) {
        writer.write(LlamaTensorNames.EMBED_TOKENS, asStored(in, LlamaTensorNames.EMBED_TOKENS));
        for (int layer = 0; layer < config.numHiddenLayers(); layer++) {
          Map<String, TensorSource> tensors = new TreeMap<>(); // a layer's work file is sorted
          for (Map.Entry<String, long[]> e : LlamaTensorNames.shapes(config).entrySet()) {
            String name = e.getKey();
            if (!name.startsWith(LlamaTensorNames.layerPrefix(layer))) {
              continue;
            }
            String module = name.substring(0, name.length() - ".weight".length());
            long[] shape = e.getValue();
            if (LlamaTensorNames.linearModules(config).contains(module)) {
              QuantizedWeight q =
                  RoundToNearest.quantize(
                      scheme.kind(),
                      in.floats(name),
                      (int) shape[0],
                      (int) shape[1],
                      params.groupSize(),
                      params.bits(),
                      params.symmetric());
              tensors.putAll(CompressedTensors.moduleTensors(module, q, null, format));
            } else {
              tensors.put(name, TensorData.ofFloats(DType.BF16, shape, in.floats(name)));
            }
          }
          for (Map.Entry<String, TensorSource> e : tensors.entrySet()) {
            writer.write(e.getKey(), e.getValue());
          }
        }
        writer.write(LlamaTensorNames.FINAL_NORM, asStored(in, LlamaTensorNames.FINAL_NORM));
        writer.write(LlamaTensorNames.LM_HEAD, asStored(in, LlamaTensorNames.LM_HEAD));
        writer.finish();
      }
      Path out = streamed.outputs().getFirst().path();
      assertThat(Files.readAllBytes(out.resolve(Checkpoint.SINGLE_FILE)))
          .as(id)
          .isEqualTo(Files.readAllBytes(reference.resolve(Checkpoint.SINGLE_FILE)));
    }
  }

  private static TensorSource asStored(Checkpoint in, String name) throws IOException {
    return new TensorData(in.info(name).dtype(), in.info(name).shape(), in.segment(name));
  }

  @Test
  void shouldCalibrateSequentiallyAndReportEveryLayerWhenGptqStreams() throws Exception {
    List<String> messages = new ArrayList<>();
    List<Double> percents = new ArrayList<>();
    StageResult sequential =
        new QuantizerStage()
            .run(
                context(
                    params("w4-gptq", null, null),
                    "seq",
                    4L << 30,
                    (p, m, metrics) -> {
                      percents.add(p);
                      messages.add(m);
                    }));
    StageResult onePass =
        new QuantizerStage().run(context(params("w4-gptq", false, null), "one-pass"));
    assertThat(sequential.metrics())
        .containsEntry("streamed", 1.0)
        .containsEntry("sequential", 1.0);
    assertThat(sequential.metrics().get("forward_gflop")).isPositive();
    assertThat(percents).isSorted();
    assertThat(percents.getLast()).isEqualTo(100.0);
    assertThat(messages).anyMatch(m -> m.startsWith("layer 2/2: gptq mlp.down_proj ("));
    assertThat(messages).anyMatch(m -> m.contains("eta "));
    // layer 1 saw the quantized layer 0's outputs, so its weights differ from the one-pass ones;
    // layer 0's do not
    Path a = sequential.outputs().getFirst().path();
    Path b = onePass.outputs().getFirst().path();
    try (Checkpoint x = Checkpoint.open(a);
        Checkpoint y = Checkpoint.open(b)) {
      String layer0 = "model.layers.0.mlp.down_proj.weight_packed";
      String layer1 = "model.layers.1.mlp.down_proj.weight_packed";
      assertThat(x.bytes(layer0)).isEqualTo(y.bytes(layer0));
      assertThat(x.bytes(layer1)).isNotEqualTo(y.bytes(layer1));
    }
    try (LlamaModel original = LlamaModel.load(QuantizerStageTest.model);
        LlamaModel q = CompressedTensors.loadDequantized(a)) {
      double error =
          QuantizerStageTest.relativeError(
              QuantizerStageTest.logits(original), QuantizerStageTest.logits(q));
      assertThat(error).isGreaterThan(0).isLessThan(0.5);
    }
  }

  @Test
  void shouldResumeFromTheLastFinishedLayerWhenKilled() throws Exception {
    StageResult reference =
        new QuantizerStage().run(context(params("w4-gptq", null, null), "resume-reference"));
    List<String> afterResume = new ArrayList<>();
    boolean[] resumed = {false};
    StageContext<QuantizerParams> ctx =
        context(
            params("w4-gptq", null, null),
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
    assertThatThrownBy(() -> new QuantizerStage().run(ctx))
        .isInstanceOf(InterruptedException.class);
    resumed[0] = true;
    StageResult result = new QuantizerStage().run(ctx);
    assertThat(result.metrics()).containsEntry("resumed_from_layer", 1.0);
    assertThat(afterResume).noneMatch(m -> m.startsWith("layer 1/2"));
    assertThat(
            maxDifference(
                reference.outputs().getFirst().path(), result.outputs().getFirst().path()))
        .isZero();
  }

  @Test
  void shouldRefuseBeforeAnyWorkNamingBothNumbersWhenTheModelCannotFitTheBudget() throws Exception {
    StageContext<QuantizerParams> ctx =
        context(params("w4-gptq", null, null), "small-budget", 100_000_000L, (p, m, metrics) -> {});
    assertThatThrownBy(() -> new QuantizerStage().run(ctx))
        .isInstanceOf(StageException.Fatal.class)
        .hasMessageContaining("needs ")
        .hasMessageContaining("this worker has 100.0 MB")
        .hasMessageContaining("DISTILLERY_WORKER_MEMORY");
    assertThat(ctx.scratch().resolve("quantized")).doesNotExist();
  }
}
