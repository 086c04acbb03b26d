package io.distillery.model.stream;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import io.distillery.model.CorruptCheckpointException;
import io.distillery.model.config.LlamaConfig;
import io.distillery.model.config.LlamaTensorNames;
import io.distillery.model.llama.LlamaModel;
import io.distillery.model.safetensors.Checkpoint;
import io.distillery.model.safetensors.DType;
import io.distillery.model.safetensors.SafetensorsWriter;
import io.distillery.model.safetensors.TensorData;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class LayerStreamerTest {

  @TempDir static Path dir;

  static LlamaConfig config;
  static Path bf16;
  static final List<int[][]> BATCHES = List.of(tokens(2, 12, 1), tokens(3, 7, 2));

  @BeforeAll
  static void writeModel() throws IOException {
    config =
        LlamaConfig.builder()
            .vocabSize(64)
            .hiddenSize(32)
            .intermediateSize(64)
            .numHiddenLayers(3)
            .numAttentionHeads(4)
            .numKeyValueHeads(2)
            .maxPositionEmbeddings(128)
            .rmsNormEps(1e-5)
            .build();
    bf16 = Files.createDirectories(dir.resolve("bf16"));
    // weights large enough that activations are O(1): the comparison must see real numbers, not ~0
    SplittableRandom random = new SplittableRandom(3);
    Map<String, TensorData> tensors = new LinkedHashMap<>();
    for (Map.Entry<String, long[]> e : LlamaTensorNames.shapes(config).entrySet()) {
      long[] shape = e.getValue();
      float[] v = new float[(int) (shape[0] * (shape.length > 1 ? shape[1] : 1))];
      for (int i = 0; i < v.length; i++) {
        double g = random.nextGaussian();
        v[i] =
            (float)
                (e.getKey().endsWith("norm.weight")
                    ? 1 + 0.1 * g
                    : e.getKey().contains("embed") ? g : g / Math.sqrt(shape[1]));
      }
      tensors.put(e.getKey(), TensorData.ofFloats(DType.BF16, shape, v));
    }
    SafetensorsWriter.write(bf16.resolve(Checkpoint.SINGLE_FILE), tensors, Map.of("format", "pt"));
    config.write(bf16);
  }

  static int[][] tokens(int rows, int seq, long seed) {
    SplittableRandom random = new SplittableRandom(seed);
    int[][] ids = new int[rows][seq];
    for (int[] row : ids) {
      for (int t = 0; t < seq; t++) {
        row[t] = random.nextInt(64);
      }
    }
    return ids;
  }

  /**
   * Records every observed linear input (per layer and module, batches concatenated); optionally
   * rewrites.
   */
  static class Recorder implements LayerVisitor {
    final Map<String, List<float[]>> inputs = new LinkedHashMap<>();

    @Override
    public boolean observes() {
      return true;
    }

    @Override
    public void observe(int layer, String module, NDArray input) {
      inputs.computeIfAbsent(module, k -> new ArrayList<>()).add(input.toFloatArray());
    }

    @Override
    public void rewrite(LayerWeights weights, StepListener step) {}
  }

  static Map<String, List<float[]>> wholeModelInputs(LlamaModel model) {
    Map<String, List<float[]>> inputs = new LinkedHashMap<>();
    try (LlamaModel.ObserverRegistration reg =
            model.observeLinearInputs(
                (module, input) ->
                    inputs
                        .computeIfAbsent(module, k -> new ArrayList<>())
                        .add(input.toFloatArray()));
        NDManager out = model.manager().newSubManager()) {
      for (int[][] batch : BATCHES) {
        model.forward(out, batch).close();
      }
    }
    inputs.remove(LlamaTensorNames.LM_HEAD_MODULE);
    return inputs;
  }

  static void assertClose(Map<String, List<float[]>> actual, Map<String, List<float[]>> expected) {
    assertThat(actual.keySet()).containsExactlyElementsOf(expected.keySet());
    double maxAbs = 0;
    for (String module : expected.keySet()) {
      for (int b = 0; b < expected.get(module).size(); b++) {
        float[] e = expected.get(module).get(b);
        float[] a = actual.get(module).get(b);
        assertThat(a).hasSameSizeAs(e);
        for (int i = 0; i < e.length; i++) {
          assertThat((double) a[i])
              .as(module + " batch " + b + " [" + i + "]")
              .isCloseTo(
                  e[i], org.assertj.core.data.Offset.offset(1e-5 * Math.max(1, Math.abs(e[i]))));
          maxAbs = Math.max(maxAbs, Math.abs(e[i]));
        }
      }
    }
    assertThat(maxAbs)
        .as("activations are O(1), so the comparison means something")
        .isGreaterThan(0.5);
  }

  @Test
  void shouldSeeTheWholeModelsLinearInputsAndCopyTheCheckpointWhenNothingIsRewritten()
      throws Exception {
    Recorder recorder = new Recorder();
    Path out = dir.resolve("identity-out");
    List<String> steps = new ArrayList<>();
    LayerStreamer.Result result =
        new LayerStreamer(bf16, config, LayerStreamer.Options.defaults().withSequential(false))
            .run(
                BATCHES,
                recorder,
                out,
                dir.resolve("identity-work"),
                "f",
                (l, n, s, f) -> steps.add(l + "/" + n + " " + s));
    try (LlamaModel model = LlamaModel.load(bf16)) {
      assertClose(recorder.inputs, wholeModelInputs(model));
    }
    assertThat(result.denseDtype()).isEqualTo(DType.BF16);
    assertThat(result.forwardFlops()).isPositive();
    assertThat(steps).contains("0/3 observe", "2/3 done");
    try (Checkpoint in = Checkpoint.open(bf16);
        Checkpoint copy = Checkpoint.open(out)) {
      assertThat(copy.tensorNames()).isEqualTo(in.tensorNames());
      for (String name : in.tensorNames()) {
        assertThat(copy.info(name).dtype()).isEqualTo(DType.BF16);
        assertThat(copy.bytes(name)).as(name).isEqualTo(in.bytes(name));
      }
    }
    try (var files = Files.list(dir.resolve("identity-work"))) {
      assertThat(files).as("work files are deleted after success").isEmpty();
    }
  }

  /**
   * Zeroes layer 0's down_proj: with sequential, layer 1 must see the outputs of the rewritten
   * layer 0.
   */
  static class ZeroDown extends Recorder {
    @Override
    public void rewrite(LayerWeights weights, StepListener step) {
      if (weights.layer() == 0) {
        String name = "model.layers.0.mlp.down_proj.weight";
        weights.set(name, new float[weights.get(name).length]);
      }
    }
  }

  @Test
  void shouldCalibrateLayerOnTheRewrittenPreviousLayerWhenSequential() throws Exception {
    ZeroDown visitor = new ZeroDown();
    Path out = dir.resolve("seq-out");
    new LayerStreamer(bf16, config, LayerStreamer.Options.defaults())
        .run(BATCHES, visitor, out, dir.resolve("seq-work"), "f", (l, n, s, f) -> {});
    Map<String, List<float[]>> expected;
    try (LlamaModel model = LlamaModel.load(bf16)) {
      Map<String, List<float[]>> layer0 = wholeModelInputs(model);
      model.replaceLinearWeight("model.layers.0.mlp.down_proj", new float[32 * 64]);
      expected = wholeModelInputs(model);
      // layer 0 itself is observed with its original weights
      for (String m : layer0.keySet()) {
        if (m.startsWith("model.layers.0.")) {
          expected.put(m, layer0.get(m));
        }
      }
    }
    assertClose(visitor.inputs, expected);
    try (Checkpoint written = Checkpoint.open(out)) {
      assertThat(written.floats("model.layers.0.mlp.down_proj.weight")).containsOnly(0f);
    }
  }

  @Test
  void shouldResumeFromTheLastFinishedLayerAndWriteTheSameCheckpoint() throws Exception {
    LayerStreamer streamer = new LayerStreamer(bf16, config, LayerStreamer.Options.defaults());
    Path reference = dir.resolve("resume-reference");
    Path work = dir.resolve("resume-work");
    Path out = dir.resolve("resume-out");
    runWholeThenKilledInLayer2(streamer, reference, work, out);
    List<Integer> layersRun = new ArrayList<>();
    LayerStreamer.Result resumed =
        streamer.run(BATCHES, new ZeroDown(), out, work, "f", (l, n, s, f) -> layersRun.add(l));
    assertThat(resumed.resumedFrom()).isEqualTo(2);
    assertThat(layersRun).containsOnly(2);
    try (Checkpoint a = Checkpoint.open(reference);
        Checkpoint b = Checkpoint.open(out)) {
      for (String name : a.tensorNames()) {
        assertThat(b.bytes(name)).as(name).isEqualTo(a.bytes(name));
      }
    }
  }

  @Test
  void shouldStartOverWhenAFinishedLayersWorkFileWasCutShort() throws Exception {
    // work files are not synced: one a machine crash cut short must not be resumed from
    LayerStreamer streamer = new LayerStreamer(bf16, config, LayerStreamer.Options.defaults());
    Path reference = dir.resolve("cut-reference");
    Path work = dir.resolve("cut-work");
    Path out = dir.resolve("cut-out");
    runWholeThenKilledInLayer2(streamer, reference, work, out);
    Path layer1 = work.resolve("layer-00001.safetensors");
    byte[] whole = Files.readAllBytes(layer1);
    Files.write(layer1, Arrays.copyOf(whole, whole.length - 10));
    LayerStreamer.Result resumed =
        streamer.run(BATCHES, new ZeroDown(), out, work, "f", (l, n, s, f) -> {});
    assertThat(resumed.resumedFrom()).isZero();
    try (Checkpoint a = Checkpoint.open(reference);
        Checkpoint b = Checkpoint.open(out)) {
      for (String name : a.tensorNames()) {
        assertThat(b.bytes(name)).as(name).isEqualTo(a.bytes(name));
      }
    }
  }

  /**
   * Streams the model uninterrupted into {@code reference}, then again into {@code out} with a
   * visitor that fails in layer 2, leaving layers 0 and 1 finished in {@code work}.
   */
  private void runWholeThenKilledInLayer2(
      LayerStreamer streamer, Path reference, Path work, Path out) throws Exception {
    streamer.run(
        BATCHES,
        new ZeroDown(),
        reference,
        reference.resolveSibling(reference.getFileName() + "-work"),
        "f",
        (l, n, s, f) -> {});
    ZeroDown killedInLayer2 =
        new ZeroDown() {
          @Override
          public void rewrite(LayerWeights weights, StepListener step) {
            if (weights.layer() == 2) {
              throw new IllegalStateException("killed");
            }
            super.rewrite(weights, step);
          }
        };
    assertThatThrownBy(
            () -> streamer.run(BATCHES, killedInLayer2, out, work, "f", (l, n, s, f) -> {}))
        .hasMessage("killed");
  }

  @Test
  void shouldHandTheStoredTensorsAndWriteTheSameCheckpointWhenNothingRunsForward()
      throws Exception {
    Path reference = dir.resolve("lazy-reference");
    new LayerStreamer(bf16, config, LayerStreamer.Options.defaults())
        .run(
            BATCHES,
            new ZeroDown(),
            reference,
            dir.resolve("lazy-reference-work"),
            "f",
            (l, n, s, f) -> {});
    List<Boolean> storedBeforeGet = new ArrayList<>();
    List<Boolean> storedAfterGet = new ArrayList<>();
    List<Boolean> reruns = new ArrayList<>();
    ZeroDown lazy =
        new ZeroDown() {
          @Override
          public void rewrite(LayerWeights weights, StepListener step) {
            String name = "model.layers." + weights.layer() + ".self_attn.q_proj.weight";
            storedBeforeGet.add(
                weights.stored(name) != null && weights.stored(name).dtype() == DType.BF16);
            weights.get(name);
            storedAfterGet.add(weights.stored(name) != null);
            reruns.add(weights.reruns());
            super.rewrite(weights, step);
          }
        };
    Path out = dir.resolve("lazy-out");
    LayerStreamer.Result result =
        new LayerStreamer(bf16, config, LayerStreamer.Options.defaults())
            .run(List.of(), lazy, out, dir.resolve("lazy-work"), "f", (l, n, s, f) -> {});
    assertThat(result.forwardFlops()).isZero();
    assertThat(storedBeforeGet).hasSize(config.numHiddenLayers()).containsOnly(true);
    assertThat(storedAfterGet).containsOnly(false);
    assertThat(reruns).containsOnly(false);
    try (Checkpoint a = Checkpoint.open(reference);
        Checkpoint b = Checkpoint.open(out)) {
      assertThat(b.tensorNames()).isEqualTo(a.tensorNames());
      for (String name : a.tensorNames()) {
        assertThat(b.bytes(name)).as(name).isEqualTo(a.bytes(name));
      }
    }
  }

  @Test
  void shouldStartOverWhenTheFingerprintDiffers() throws Exception {
    Path work = dir.resolve("fingerprint-work");
    LayerStreamer streamer = new LayerStreamer(bf16, config, LayerStreamer.Options.defaults());
    LayerVisitor killed =
        new Recorder() {
          @Override
          public void rewrite(LayerWeights weights, StepListener step) {
            if (weights.layer() == 1) {
              throw new IllegalStateException("killed");
            }
          }
        };
    assertThatThrownBy(
        () -> streamer.run(BATCHES, killed, dir.resolve("fp-out"), work, "a", (l, n, s, f) -> {}));
    assertThat(
            streamer
                .run(BATCHES, new Recorder(), dir.resolve("fp-out"), work, "b", (l, n, s, f) -> {})
                .resumedFrom())
        .isZero();
  }

  @Test
  void shouldRefuseNamingTheTensorWhenItsShapeDisagreesWithConfig() throws Exception {
    LlamaConfig wider =
        LlamaConfig.builder()
            .vocabSize(64)
            .hiddenSize(32)
            .intermediateSize(96)
            .numHiddenLayers(3)
            .numAttentionHeads(4)
            .numKeyValueHeads(2)
            .maxPositionEmbeddings(128)
            .rmsNormEps(1e-5)
            .build();
    assertThatThrownBy(
            () ->
                new LayerStreamer(bf16, wider, LayerStreamer.Options.defaults())
                    .run(
                        List.of(),
                        new Recorder(),
                        dir.resolve("bad-out"),
                        dir.resolve("bad-work"),
                        "f",
                        (l, n, s, f) -> {}))
        .isInstanceOf(CorruptCheckpointException.class)
        .hasMessageContaining("model.layers.0.mlp.gate_proj.weight")
        .hasMessageContaining("config.json");
  }
}
