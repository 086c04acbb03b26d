package io.distillery.quantizer;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import ai.djl.ndarray.NDManager;
import io.distillery.model.calib.CalibrationStats;
import io.distillery.model.calib.StatsAccumulator;
import io.distillery.model.llama.LlamaModel;
import io.distillery.model.quant.CompressedTensors;
import io.distillery.model.safetensors.Checkpoint;
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
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.SplittableRandom;
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
