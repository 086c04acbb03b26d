package io.distillery.quantizer.smoothquant;

import io.distillery.model.calib.CalibrationStats;
import io.distillery.model.calib.LayerStats;
import io.distillery.model.config.LlamaConfig;
import io.distillery.model.config.LlamaTensorNames;
import io.distillery.model.config.Projection;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * SmoothQuant applied to a Llama model (Xiao et al., arXiv 2211.10438, Section 4): the per-channel
 * scales of {@link SmoothQuant} folded into the RMSNorm before each group of projections that read
 * the same input, then a static per-tensor input scale per quantized module. Every step stays
 * within one decoder layer, so the same code serves the whole model in memory ({@link #smooth}) and
 * the layer-streaming executor one layer at a time ({@link #smoothLayer}, {@link #inputScales}).
 * The model surgery lives here, next to the algorithm; the quantizer stage only calls it.
 */
public final class SmoothQuantModel {

  private SmoothQuantModel() {}

  /**
   * SmoothQuant on q/k/v (input_layernorm) and gate/up (post_attention_layernorm) of every layer;
   * static scales for all of {@code modules}.
   */
  public static void smooth(
      LlamaConfig config,
      Map<String, float[]> tensors,
      CalibrationStats stats,
      double alpha,
      InputScale inputScale,
      List<String> modules,
      Map<String, Float> inputScales) {
    Map<String, float[]> smoothing = new LinkedHashMap<>();
    for (int layer = 0; layer < config.numHiddenLayers(); layer++) {
      smoothLayer(config, layer, tensors, stats, alpha, smoothing);
    }
    inputScales(tensors, stats, inputScale, modules, smoothing, inputScales);
  }

  /**
   * SmoothQuant on one decoder layer: q/k/v's scales folded into its input_layernorm, gate/up's
   * into its post_attention_layernorm (every consumer of the norm is rescaled, quantized or not, so
   * the float layer is unchanged).
   *
   * @param tensors at least this layer's tensors by transformers name, changed in place
   * @param stats the statistics of this layer's linear inputs (before smoothing)
   * @param smoothing receives the per-channel scales each projection's input was divided by
   */
  public static void smoothLayer(
      LlamaConfig config,
      int layer,
      Map<String, float[]> tensors,
      CalibrationStats stats,
      double alpha,
      Map<String, float[]> smoothing) {
    int hidden = config.hiddenSize();
    List<Projection> attn = List.of(Projection.Q, Projection.K, Projection.V);
    List<Projection> mlp = List.of(Projection.GATE, Projection.UP);
    for (List<Projection> group : List.of(attn, mlp)) {
      String norm =
          group == attn
              ? LlamaTensorNames.inputLayernorm(layer)
              : LlamaTensorNames.postAttentionLayernorm(layer);
      List<float[]> weights = new ArrayList<>();
      int[] rows = new int[group.size()];
      for (int i = 0; i < group.size(); i++) {
        weights.add(tensors.get(LlamaTensorNames.weight(group.get(i).module(layer))));
        rows[i] = group.get(i).outFeatures(config);
      }
      float[] absMax = stats.layer(group.getFirst().module(layer)).absMax();
      float[] s = SmoothQuant.scales(absMax, weights, rows, hidden, alpha);
      SmoothQuant.fold(tensors.get(norm), weights, rows, hidden, s);
      for (Projection p : group) {
        smoothing.put(p.module(layer), s);
      }
    }
  }

  /**
   * The static per-tensor input scale of each of {@code modules} ({@link InputScale#choose}), on
   * the smoothed weights and the smoothing each module's input got (none for o_proj, down_proj).
   */
  public static void inputScales(
      Map<String, float[]> tensors,
      CalibrationStats stats,
      InputScale inputScale,
      List<String> modules,
      Map<String, float[]> smoothing,
      Map<String, Float> inputScales) {
    for (String module : modules) {
      LayerStats in = stats.layer(module);
      float[] w = tensors.get(LlamaTensorNames.weight(module));
      inputScales.put(
          module,
          inputScale.choose(in, smoothing.get(module), w, w.length / in.inFeatures()).scale());
    }
  }
}
