package io.distillery.quantizer;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import io.distillery.model.calib.CalibrationStats;
import io.distillery.model.calib.StatsAccumulator;
import io.distillery.model.config.LlamaConfig;
import io.distillery.model.config.LlamaTensorNames;
import io.distillery.model.config.Projection;
import io.distillery.model.llama.LlamaModel;
import io.distillery.model.safetensors.Checkpoint;
import io.distillery.model.safetensors.SafetensorsWriter;
import io.distillery.model.safetensors.TensorData;
import io.distillery.quantizer.awq.AwqModel;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Set;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * AWQ's scales are folded into the operators that produce each scaled input (arXiv 2306.00978,
 * Section 3.2): before any rounding, the float model must compute the same function. Grouped-query
 * attention (4 query heads on 2 value heads) and a v_proj bias make the o_proj/v_proj fold
 * non-trivial.
 */
class AwqFoldTest {

  @TempDir Path dir;

  static final LlamaConfig CONFIG =
      LlamaConfig.builder()
          .vocabSize(64)
          .hiddenSize(32)
          .intermediateSize(48)
          .numHiddenLayers(2)
          .numAttentionHeads(4)
          .numKeyValueHeads(2)
          .maxPositionEmbeddings(64)
          .rmsNormEps(1e-5)
          .attentionBias(true)
          .build();

  static final int[][] PROMPT = {
    {3, 17, 42, 8, 63, 1, 29, 5, 11, 40}, {7, 7, 2, 50, 33, 21, 9, 60, 14, 4}
  };

  static Map<String, float[]> randomTensors(long seed) {
    SplittableRandom random = new SplittableRandom(seed);
    Map<String, float[]> out = new LinkedHashMap<>();
    for (Map.Entry<String, long[]> e : LlamaTensorNames.shapes(CONFIG).entrySet()) {
      long[] shape = e.getValue();
      float[] v = new float[(int) (shape[0] * (shape.length > 1 ? shape[1] : 1))];
      for (int i = 0; i < v.length; i++) {
        double g = random.nextGaussian();
        v[i] =
            (float)
                (e.getKey().endsWith("norm.weight")
                    ? 1 + 0.2 * g
                    : e.getKey().endsWith(".bias")
                        ? 0.1 * g
                        : e.getKey().contains("embed") ? g : g / Math.sqrt(shape[1]));
      }
      out.put(e.getKey(), v);
    }
    return out;
  }

  float[] logits(Map<String, float[]> tensors, String name) throws IOException {
    Path model = Files.createDirectories(dir.resolve(name));
    Map<String, TensorData> data = new LinkedHashMap<>();
    LlamaTensorNames.shapes(CONFIG)
        .forEach((n, shape) -> data.put(n, TensorData.ofFloats(shape, tensors.get(n))));
    SafetensorsWriter.write(model.resolve(Checkpoint.SINGLE_FILE), data, Map.of("format", "pt"));
    CONFIG.write(model);
    try (LlamaModel m = LlamaModel.load(model);
        NDManager out = m.manager().newSubManager();
        NDArray l = m.forward(out, PROMPT)) {
      return l.toFloatArray();
    }
  }

  static double relativeError(float[] a, float[] b) {
    double diff = 0;
    double norm = 0;
    for (int i = 0; i < a.length; i++) {
      diff += (a[i] - b[i]) * (double) (a[i] - b[i]);
      norm += a[i] * (double) a[i];
    }
    return Math.sqrt(diff / norm);
  }

  static Map<String, float[]> copy(Map<String, float[]> tensors) {
    Map<String, float[]> out = new LinkedHashMap<>();
    tensors.forEach((k, v) -> out.put(k, v.clone()));
    return out;
  }

  @Test
  void shouldLeaveFloatLogitsUnchangedWhenFoldingOProjScalesIntoValueRowsAndBias()
      throws Exception {
    Map<String, float[]> tensors = randomTensors(11);
    float[] before = logits(tensors, "before");
    Map<String, float[]> scaled = copy(tensors);
    SplittableRandom random = new SplittableRandom(3);
    float[] perChannel = new float[CONFIG.attentionWidth()];
    for (int c = 0; c < perChannel.length; c++) {
      perChannel[c] = (float) (0.2 + 3 * random.nextDouble());
    }
    // equal means per (value head, dim) give equal scales across the query heads of a group
    float[] s = AwqModel.tieAcrossQueryGroups(CONFIG, perChannel);
    int headDim = CONFIG.headDim();
    assertThat(s[0])
        .isEqualTo(s[headDim])
        .isNotEqualTo(s[2 * headDim]); // heads 0,1 share value head 0; head 2 not
    AwqModel.foldIntoValue(CONFIG, scaled, 1, s);

    String o = LlamaTensorNames.weight(Projection.O.module(1));
    assertThat(scaled.get(o)).isNotEqualTo(tensors.get(o));
    assertThat(scaled.get(LlamaTensorNames.bias(Projection.V.module(1))))
        .isNotEqualTo(tensors.get(LlamaTensorNames.bias(Projection.V.module(1))));
    assertThat(relativeError(before, logits(scaled, "after"))).isLessThan(1e-5);
  }

  @Test
  void shouldLeaveFloatLogitsUnchangedWhenFoldingDownProjScalesIntoUpRows() throws Exception {
    Map<String, float[]> tensors = randomTensors(12);
    float[] before = logits(tensors, "before");
    Map<String, float[]> scaled = copy(tensors);
    SplittableRandom random = new SplittableRandom(4);
    float[] s = new float[CONFIG.intermediateSize()];
    for (int c = 0; c < s.length; c++) {
      s[c] = (float) (0.2 + 3 * random.nextDouble());
    }
    AwqModel.foldIntoUp(CONFIG, scaled, 0, s);
    assertThat(relativeError(before, logits(scaled, "after"))).isLessThan(1e-5);
  }

  @Test
  void shouldNeitherSearchNorScaleAnExcludedLayerWhenItsWidthDoesNotFitTheGroupSize()
      throws Exception {
    Map<String, float[]> tensors = randomTensors(15);
    Path model = dir.resolve("model");
    logits(tensors, "model");
    StatsAccumulator accumulator = new StatsAccumulator(16, 1.5f, Set.of(), true);
    try (LlamaModel m = LlamaModel.load(model);
        LlamaModel.ObserverRegistration r =
            m.observeLinearInputs(
                (module, input) ->
                    accumulator.add(module, input.toFloatArray(), (int) input.getShape().get(2)));
        NDManager out = m.manager().newSubManager()) {
      m.forward(out, PROMPT).close();
    }
    Set<String> quantized = new java.util.HashSet<>(LlamaTensorNames.linearModules(CONFIG));
    quantized.removeIf(m -> m.endsWith("down_proj") || m.equals(LlamaTensorNames.LM_HEAD_MODULE));
    Map<String, float[]> scaled = copy(tensors);
    // group 32 divides hidden 32 but not intermediate 48: down_proj (input 48) must be left alone
    AwqModel.scale(
        CONFIG,
        scaled,
        accumulator.result(Map.of()),
        new AwqModel.Settings(32, 20, 4),
        quantized,
        new HashMap<>());
    for (int layer = 0; layer < CONFIG.numHiddenLayers(); layer++) {
      String down = LlamaTensorNames.weight(Projection.DOWN.module(layer));
      assertThat(scaled.get(down)).isEqualTo(tensors.get(down));
    }
  }

  @Test
  void shouldRefuseOProjScalesThatDifferWithinAQueryGroup() {
    Map<String, float[]> tensors = randomTensors(13);
    float[] s = new float[CONFIG.attentionWidth()];
    java.util.Arrays.fill(s, 1f);
    s[CONFIG.headDim()] = 2f; // head 1 reads value head 0, like head 0, but gets another scale
    assertThatThrownBy(() -> AwqModel.foldIntoValue(CONFIG, tensors, 0, s))
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessageContaining("same value head");
  }

  @Test
  void shouldLeaveFloatLogitsUnchangedWhenAwqScalesEveryProjectionBeforeQuantization()
      throws Exception {
    Map<String, float[]> tensors = randomTensors(14);
    float[] before = logits(tensors, "before");
    StatsAccumulator accumulator = new StatsAccumulator(16, 1.5f, Set.of(), true);
    Path model = dir.resolve("before");
    try (LlamaModel m = LlamaModel.load(model);
        LlamaModel.ObserverRegistration r =
            m.observeLinearInputs(
                (module, input) ->
                    accumulator.add(module, input.toFloatArray(), (int) input.getShape().get(2)));
        NDManager out = m.manager().newSubManager()) {
      m.forward(out, PROMPT).close();
    }
    CalibrationStats stats = accumulator.result(Map.of());
    Map<String, float[]> scaled = copy(tensors);
    Set<String> quantized = new java.util.HashSet<>(LlamaTensorNames.linearModules(CONFIG));
    quantized.remove(LlamaTensorNames.LM_HEAD_MODULE);
    AwqModel.scale(
        CONFIG, scaled, stats, new AwqModel.Settings(16, 20, 4), quantized, new HashMap<>());

    int changed = 0;
    for (int layer = 0; layer < CONFIG.numHiddenLayers(); layer++) {
      for (Projection p : Projection.values()) {
        String w = LlamaTensorNames.weight(p.module(layer));
        changed += java.util.Arrays.equals(scaled.get(w), tensors.get(w)) ? 0 : 1;
      }
    }
    assertThat(changed).as("AWQ chose a non-trivial scale somewhere").isPositive();
    assertThat(relativeError(before, logits(scaled, "after"))).isLessThan(1e-5);
  }
}
