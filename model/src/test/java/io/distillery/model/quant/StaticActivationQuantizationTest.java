package io.distillery.model.quant;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import io.distillery.model.CorruptCheckpointException;
import io.distillery.model.config.LlamaConfig;
import io.distillery.model.config.LlamaTensorNames;
import io.distillery.model.llama.LlamaModel;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class StaticActivationQuantizationTest {

  @TempDir Path dir;

  private static final int[][] PROMPT = {{1, 5, 9, 13, 2, 40, 63, 7}};

  @Test
  void shouldRoundClampAndRescaleWhenModuleHasAScale() {
    StaticActivationQuantization q = new StaticActivationQuantization(Map.of("m", 0.5f));
    try (NDManager manager = Engine.getEngine("PyTorch").newBaseManager()) {
      NDArray x =
          manager.create(
              new float[] {0.26f, -0.74f, 100f, -100f, 0.25f, 0.75f}, new Shape(1, 1, 6));
      // x / 0.5 = 0.52, -1.48, 200, -200, 0.5, 1.5 -> round half even 1, -1, 127 (clamped), -128,
      // 0, 2 -> * 0.5
      assertThat(q.apply("m", x).toFloatArray()).containsExactly(0.5f, -0.5f, 63.5f, -64f, 0f, 1f);
      assertThat(q.apply("other", x)).isSameAs(x);
    }
  }

  @Test
  void shouldQuantizeEveryLayerInputWhenLoadingW8A8Checkpoint() throws Exception {
    LlamaConfig config = CompressedTensorsTest.tinyConfig();
    Map<String, float[]> tensors = CompressedTensorsTest.randomTensors(config, 5);
    Map<String, QuantizedWeight> quantized = new LinkedHashMap<>();
    Map<String, Float> scales = new LinkedHashMap<>();
    for (String module : LlamaTensorNames.linearModules(config)) {
      if (!module.equals("lm_head")) {
        long[] shape = LlamaTensorNames.shapes(config).get(module + ".weight");
        quantized.put(
            module,
            GroupQuantizer.int8PerChannel(
                tensors.get(module + ".weight"), (int) shape[0], (int) shape[1]));
        scales.put(
            module,
            0.05f); // coarse: inputs of norm ~1 land on ~20 levels, so the effect is visible
      }
    }
    Path w8a8 = dir.resolve("w8a8");
    CompressedTensors.write(
        w8a8,
        config,
        tensors,
        quantized,
        scales,
        new QuantizationScheme(QuantizedWeight.Kind.INT8_CHANNEL, 0, true, List.of("lm_head")));
    Path dense = dir.resolve("dense");
    CompressedTensors.decompress(w8a8, dense);

    List<String> seen = new ArrayList<>();
    try (LlamaModel loaded = CompressedTensors.loadDequantized(w8a8);
        LlamaModel weightOnly = LlamaModel.load(dense);
        LlamaModel manual = LlamaModel.load(dense);
        LlamaModel.ObserverRegistration r =
            manual.transformLinearInputs(new StaticActivationQuantization(scales));
        LlamaModel.ObserverRegistration o =
            loaded.observeLinearInputs((module, input) -> seen.add(module))) {
      float[] expected = logits(manual);
      float[] actual = logits(loaded);
      assertThat(actual).containsExactly(expected);
      assertThat(maxAbsDiff(actual, logits(weightOnly)))
          .as("activations were quantized")
          .isGreaterThan(1e-3);
      assertThat(seen).containsAll(scales.keySet());
    }
  }

  @Test
  void shouldRefuseW8A8CheckpointWhenALayerHasNoInputScale() throws Exception {
    LlamaConfig config = CompressedTensorsTest.tinyConfig();
    Map<String, float[]> tensors = CompressedTensorsTest.randomTensors(config, 6);
    String q = "model.layers.0.self_attn.q_proj";
    String k = "model.layers.0.self_attn.k_proj";
    Map<String, QuantizedWeight> quantized = new LinkedHashMap<>();
    for (String module : List.of(q, k)) {
      long[] shape = LlamaTensorNames.shapes(config).get(module + ".weight");
      quantized.put(
          module,
          GroupQuantizer.int8PerChannel(
              tensors.get(module + ".weight"), (int) shape[0], (int) shape[1]));
    }
    CompressedTensors.write(
        dir,
        config,
        tensors,
        quantized,
        Map.of(q, 0.1f),
        new QuantizationScheme(QuantizedWeight.Kind.INT8_CHANNEL, 0, true, List.of()));
    assertThatThrownBy(() -> CompressedTensors.activationQuantization(dir))
        .isInstanceOf(CorruptCheckpointException.class)
        .hasMessageContaining(k)
        .hasMessageContaining("input_scale");
  }

  private static float[] logits(LlamaModel model) {
    try (NDManager out = model.manager().newSubManager();
        NDArray logits = model.forward(out, PROMPT)) {
      return logits.toFloatArray();
    }
  }

  private static double maxAbsDiff(float[] a, float[] b) {
    double max = 0;
    for (int i = 0; i < a.length; i++) {
      max = Math.max(max, Math.abs(a[i] - b[i]));
    }
    return max;
  }
}
