package io.distillery.model.stream;

import static org.assertj.core.api.Assertions.assertThat;

import ai.djl.ndarray.NDArray;
import io.distillery.model.llama.LinearInputTransform;
import io.distillery.model.llama.LlamaModel;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@link LayerVisitor#rerunInput}: the sequential re-run of a rewritten layer multiplies the inputs
 * the visitor hands back (e.g. W8A8's simulated INT8 inputs), so the next layer sees what the whole
 * model with that input transform computes, while the observe pass still sees the layer's own
 * inputs.
 */
class LayerStreamerRerunInputTest {

  @TempDir static Path dir;

  /** Layer 0's linear inputs halved and rounded to steps of 0.25: a stand-in for INT8 inputs. */
  static final LinearInputTransform COARSE_LAYER_0 =
      (module, input) ->
          module.startsWith("model.layers.0.") ? input.mul(4f).round().div(8f) : input;

  @BeforeAll
  static void writeModel() throws Exception {
    LayerStreamerTest.dir = dir; // LayerStreamerTest's BF16 model, in this class's directory
    LayerStreamerTest.writeModel();
  }

  static class CoarseRerun extends LayerStreamerTest.Recorder {
    @Override
    public NDArray rerunInput(int layer, String module, NDArray input) {
      assertThat(module).startsWith("model.layers." + layer + ".");
      return COARSE_LAYER_0.apply(module, input);
    }
  }

  @Test
  void shouldCalibrateTheNextLayerOnTheTransformedInputsWhenSequential() throws Exception {
    CoarseRerun coarse = new CoarseRerun();
    new LayerStreamer(
            LayerStreamerTest.bf16,
            LayerStreamerTest.config,
            LayerStreamer.Options.defaults().withSequential(true))
        .run(
            LayerStreamerTest.BATCHES,
            coarse,
            null,
            dir.resolve("coarse-work"),
            "coarse",
            (l, n, s, f) -> {});
    LayerStreamerTest.Recorder plain = new LayerStreamerTest.Recorder();
    new LayerStreamer(
            LayerStreamerTest.bf16,
            LayerStreamerTest.config,
            LayerStreamer.Options.defaults().withSequential(true))
        .run(
            LayerStreamerTest.BATCHES,
            plain,
            null,
            dir.resolve("plain-work"),
            "plain",
            (l, n, s, f) -> {});
    Map<String, List<float[]>> expected;
    try (LlamaModel model = LlamaModel.load(LayerStreamerTest.bf16);
        LlamaModel.ObserverRegistration reg = model.transformLinearInputs(COARSE_LAYER_0)) {
      expected = LayerStreamerTest.wholeModelInputs(model);
    }
    // the observe pass of layer 0 saw the layer's own inputs; the re-run's changed what layer 1 saw
    String layer0 = "model.layers.0.mlp.down_proj";
    String layer1 = "model.layers.1.self_attn.q_proj";
    assertThat(coarse.inputs.get(layer0).getFirst()).isEqualTo(plain.inputs.get(layer0).getFirst());
    assertThat(coarse.inputs.get(layer1).getFirst())
        .isNotEqualTo(plain.inputs.get(layer1).getFirst());
    // from layer 1 on, equal to the whole model with the transform (whose layer 0 transformed its
    // own later inputs too, so layer 0 is left out)
    coarse.inputs.keySet().removeIf(m -> m.startsWith("model.layers.0."));
    expected.keySet().removeIf(m -> m.startsWith("model.layers.0."));
    LayerStreamerTest.assertClose(coarse.inputs, expected);
  }
}
