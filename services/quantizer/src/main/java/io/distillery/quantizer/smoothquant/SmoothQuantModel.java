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
 * SmoothQuant applied to a whole Llama model (Xiao et al., arXiv 2211.10438, Section 4): the
 * per-channel scales of {@link SmoothQuant} folded into the RMSNorm before each group of
 * projections that read the same input, then a static per-tensor input scale per quantized module.
 * The model surgery lives here, next to the algorithm; the quantizer stage only calls it.
 */
public final class SmoothQuantModel {

  private SmoothQuantModel() {}

  /**
   * SmoothQuant on q/k/v (input_layernorm) and gate/up (post_attention_layernorm); static scales
   * for all.
   */
  public static void smooth(
      LlamaConfig config,
      Map<String, float[]> tensors,
      CalibrationStats stats,
      double alpha,
      InputScale inputScale,
      List<String> modules,
      Map<String, Float> inputScales) {
    int hidden = config.hiddenSize();
    Map<String, float[]> smoothing = new LinkedHashMap<>();
    for (int layer = 0; layer < config.numHiddenLayers(); layer++) {
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
    for (String module : modules) {
      LayerStats in = stats.layer(module);
      float[] w = tensors.get(LlamaTensorNames.weight(module));
      inputScales.put(
          module,
          inputScale.choose(in, smoothing.get(module), w, w.length / in.inFeatures()).scale());
    }
  }
}
