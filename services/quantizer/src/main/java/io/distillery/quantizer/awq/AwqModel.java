package io.distillery.quantizer.awq;

import io.distillery.model.calib.CalibrationStats;
import io.distillery.model.calib.LayerStats;
import io.distillery.model.config.LlamaConfig;
import io.distillery.model.config.LlamaTensorNames;
import io.distillery.model.config.Projection;
import io.distillery.quantizer.smoothquant.SmoothQuant;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * AWQ applied to a Llama model: the scale search of {@link AwqScaleSearch} per group of projections
 * that read the same input, folded into the operator that produces that input, then the clipping
 * search of {@link AwqClipSearch}. Every step stays within one decoder layer, so the same code
 * serves the whole model in memory ({@link #scale}, {@link #clip}) and the layer-streaming executor
 * one layer at a time ({@link #scaleLayer}, {@link #clipModules}). The model surgery lives here,
 * next to the algorithm; the quantizer stage only calls it.
 */
public final class AwqModel {

  /** AWQ clipping grid: ratios 1, 0.95, ... 0.55, as the authors' n_grid 20 with max_shrink 0.5. */
  public static final int CLIP_STEPS = 10;

  public static final double CLIP_MAX_SHRINK = 0.5;

  /**
   * What the searches need from the quantizer's params.
   *
   * @param groupSize input columns per quantization group
   * @param grid exponents on the scale search's grid over [0, 1)
   * @param bits code width of the group grid
   */
  public record Settings(int groupSize, int grid, int bits) {}

  private AwqModel() {}

  /**
   * The running totals of the scale and clip searches, over however many layers were searched (the
   * whole model at once, or one streamed layer at a time), and the metrics they give.
   */
  public static final class Summary {
    private double ratioSum;
    private int searches;
    private double clipBefore;
    private double clipAfter;
    private double clipRatios;
    private int clipped;

    /** Mean chosen exponent r over the scale searches (0 when none ran). */
    public double meanRatio() {
      return searches == 0 ? 0 : ratioSum / searches;
    }

    /**
     * {@code awq_mean_ratio}, {@code awq_clip_layers}, {@code awq_clip_mean_ratio} and {@code
     * awq_clip_error_reduction}.
     */
    public Map<String, Double> metrics() {
      Map<String, Double> m = new LinkedHashMap<>();
      m.put("awq_mean_ratio", meanRatio());
      m.putAll(clipMetrics());
      return m;
    }

    Map<String, Double> clipMetrics() {
      Map<String, Double> m = new LinkedHashMap<>();
      m.put("awq_clip_layers", (double) clipped);
      m.put("awq_clip_mean_ratio", clipped == 0 ? 1.0 : clipRatios / clipped);
      m.put("awq_clip_error_reduction", clipBefore == 0 ? 0.0 : 1 - clipAfter / clipBefore);
      return m;
    }
  }

  /**
   * AWQ scales per decoder layer (Lin et al., arXiv 2306.00978, Section 3.2), each folded into the
   * operator that produces the scaled input so that the float model is unchanged: see {@link
   * #scaleLayer}. Returns the mean chosen exponent.
   */
  public static double scale(
      LlamaConfig config,
      Map<String, float[]> tensors,
      CalibrationStats stats,
      Settings settings,
      Set<String> quantized,
      Map<String, float[]> applied) {
    Summary summary = new Summary();
    for (int layer = 0; layer < config.numHiddenLayers(); layer++) {
      scaleLayer(config, layer, tensors, stats, settings, quantized, applied, summary);
    }
    return summary.meanRatio();
  }

  /**
   * AWQ scales of one decoder layer, each folded into the operator of that layer that produces the
   * scaled input so that the float layer is unchanged: down_proj's 1/s into up_proj's output rows
   * (its input is act(gate) * up), o_proj's into v_proj's output rows (its input is softmax(QK^T)
   * V, linear in V), gate/up's into post_attention_layernorm, q/k/v's into input_layernorm, in that
   * order (gate/up are searched on up as down_proj's fold left it, q/k/v on v as o_proj's left it).
   * With grouped-query attention one v_proj row feeds the same channel of every query head of its
   * group, so o_proj's scales are tied across those heads (searched on the group's mean
   * activation). The whole-model path calls it for every layer; the streamed path for the one layer
   * it holds, with that layer's statistics.
   *
   * @param tensors at least this layer's tensors by transformers name, changed in place
   * @param stats the statistics of this layer's linear inputs (in the basis before any scaling)
   * @param applied receives the scales applied to each searched module's input
   */
  public static void scaleLayer(
      LlamaConfig config,
      int layer,
      Map<String, float[]> tensors,
      CalibrationStats stats,
      Settings settings,
      Set<String> quantized,
      Map<String, float[]> applied,
      Summary summary) {
    int hidden = config.hiddenSize();
    // a scale only helps a layer that is quantized: excluded ones are neither searched nor scaled
    String downModule = Projection.DOWN.module(layer);
    if (quantized.contains(downModule)) {
      AwqScaleSearch.Result r =
          search(
              List.of(tensors.get(LlamaTensorNames.weight(downModule))),
              new int[] {hidden},
              config.intermediateSize(),
              stats.layer(downModule).meanAbs(),
              stats.layer(downModule),
              settings);
      foldIntoUp(config, tensors, layer, r.scales());
      applied.put(downModule, r.scales());
      summary.ratioSum += r.ratio();
      summary.searches++;
    }

    String oModule = Projection.O.module(layer);
    if (quantized.contains(oModule)) {
      LayerStats oStats = stats.layer(oModule);
      AwqScaleSearch.Result ro =
          search(
              List.of(tensors.get(LlamaTensorNames.weight(oModule))),
              new int[] {hidden},
              config.attentionWidth(),
              tieAcrossQueryGroups(config, oStats.meanAbs()),
              oStats,
              settings);
      foldIntoValue(config, tensors, layer, ro.scales());
      applied.put(oModule, ro.scales());
      summary.ratioSum += ro.ratio();
      summary.searches++;
    }

    for (List<Projection> group :
        List.of(
            List.of(Projection.GATE, Projection.UP),
            List.of(Projection.Q, Projection.K, Projection.V))) {
      String norm =
          group.getFirst() == Projection.GATE
              ? LlamaTensorNames.postAttentionLayernorm(layer)
              : LlamaTensorNames.inputLayernorm(layer);
      // every consumer of the norm is rescaled (the fold must keep the float model); the
      // quantized ones are scored
      List<float[]> all = new ArrayList<>();
      int[] allRows = new int[group.size()];
      List<float[]> scored = new ArrayList<>();
      List<Integer> scoredRows = new ArrayList<>();
      for (int i = 0; i < group.size(); i++) {
        float[] w = tensors.get(LlamaTensorNames.weight(group.get(i).module(layer)));
        all.add(w);
        allRows[i] = group.get(i).outFeatures(config);
        if (quantized.contains(group.get(i).module(layer))) {
          scored.add(w);
          scoredRows.add(allRows[i]);
        }
      }
      if (scored.isEmpty()) {
        continue;
      }
      LayerStats s = stats.layer(group.getFirst().module(layer));
      AwqScaleSearch.Result g =
          search(
              scored,
              scoredRows.stream().mapToInt(Integer::intValue).toArray(),
              hidden,
              s.meanAbs(),
              s,
              settings);
      SmoothQuant.fold(tensors.get(norm), all, allRows, hidden, g.scales());
      for (Projection p : group) {
        applied.put(p.module(layer), g.scales());
      }
      summary.ratioSum += g.ratio();
      summary.searches++;
    }
  }

  /**
   * AWQ's clipping search ({@link AwqClipSearch}) on every quantized projection but q_proj and
   * k_proj (whose error reaches the output through the softmax of QK^T, so the authors leave them
   * unclipped), in the input basis left by the scale search. Returns the summed output error before
   * and after, and the mean clip ratio.
   */
  public static Map<String, Double> clip(
      Map<String, float[]> tensors,
      CalibrationStats stats,
      Settings settings,
      List<String> quantized,
      Map<String, float[]> scales) {
    Summary summary = new Summary();
    clipModules(tensors, stats, settings, quantized, scales, summary);
    return summary.clipMetrics();
  }

  /**
   * The clipping search of {@link #clip} on {@code modules} (e.g. the quantized modules of the one
   * layer a streamed run holds), adding to {@code summary}.
   */
  public static void clipModules(
      Map<String, float[]> tensors,
      CalibrationStats stats,
      Settings settings,
      List<String> modules,
      Map<String, float[]> scales,
      Summary summary) {
    for (String module : modules) {
      if (module.endsWith(".q_proj") || module.endsWith(".k_proj")) {
        continue;
      }
      LayerStats s = stats.layer(module);
      if (s.gram() == null) {
        continue; // calibrated without X^T X: nothing to score the clip ratios on
      }
      float[] w = tensors.get(LlamaTensorNames.weight(module));
      AwqClipSearch.Result r =
          AwqClipSearch.clip(
              w,
              w.length / s.inFeatures(),
              s.inFeatures(),
              settings.groupSize(),
              s.gram(),
              scales.get(module),
              CLIP_STEPS,
              CLIP_MAX_SHRINK,
              settings.bits());
      summary.clipBefore += r.rtnError();
      summary.clipAfter += r.clippedError();
      summary.clipRatios += r.meanRatio();
      summary.clipped++;
    }
  }

  /**
   * down_proj's columns times s, up_proj's output rows divided by s: act(gate) * (up / s) * s is
   * unchanged.
   */
  public static void foldIntoUp(
      LlamaConfig config, Map<String, float[]> tensors, int layer, float[] s) {
    int hidden = config.hiddenSize();
    int inter = config.intermediateSize();
    scaleColumns(
        tensors.get(LlamaTensorNames.weight(Projection.DOWN.module(layer))), hidden, inter, s);
    float[] up = tensors.get(LlamaTensorNames.weight(Projection.UP.module(layer)));
    for (int row = 0; row < inter; row++) {
      for (int j = 0; j < hidden; j++) {
        up[row * hidden + j] /= s[row];
      }
    }
  }

  /**
   * o_proj's columns times s, v_proj's output rows (and bias) divided by s. Column h * headDim + d
   * of o_proj reads channel d of query head h, which is channel d of value head h / (heads /
   * kvHeads): s must be equal across the query heads of a group (see {@link
   * #tieAcrossQueryGroups}), and v_proj's row is divided by that shared value.
   *
   * @throws IllegalArgumentException if s differs within a group of query heads
   */
  public static void foldIntoValue(
      LlamaConfig config, Map<String, float[]> tensors, int layer, float[] s) {
    int hidden = config.hiddenSize();
    int headDim = config.headDim();
    int groups = config.numKeyValueGroups();
    int attention = config.attentionWidth();
    for (int c = 0; c < attention; c++) {
      int head = c / headDim;
      int first = (head / groups) * groups * headDim + c % headDim;
      if (s[c] != s[first]) {
        throw new IllegalArgumentException(
            "o_proj scale of channel "
                + c
                + " differs from channel "
                + first
                + " that reads the same value head");
      }
    }
    scaleColumns(
        tensors.get(LlamaTensorNames.weight(Projection.O.module(layer))), hidden, attention, s);
    String vModule = Projection.V.module(layer);
    float[] v = tensors.get(LlamaTensorNames.weight(vModule));
    float[] bias =
        Projection.V.hasBias(config) ? tensors.get(LlamaTensorNames.bias(vModule)) : null;
    for (int kv = 0; kv < config.numKeyValueHeads(); kv++) {
      for (int d = 0; d < headDim; d++) {
        int row = kv * headDim + d;
        float scale = s[kv * groups * headDim + d];
        for (int j = 0; j < hidden; j++) {
          v[row * hidden + j] /= scale;
        }
        if (bias != null) {
          bias[row] /= scale;
        }
      }
    }
  }

  /**
   * Per o_proj input channel (h, d): the mean of {@code meanAbs} over channel d of every query head
   * sharing h's value head, so that the scales AWQ derives from it are equal within each group.
   */
  public static float[] tieAcrossQueryGroups(LlamaConfig config, float[] meanAbs) {
    int headDim = config.headDim();
    int groups = config.numKeyValueGroups();
    float[] out = new float[meanAbs.length];
    for (int kv = 0; kv < config.numKeyValueHeads(); kv++) {
      for (int d = 0; d < headDim; d++) {
        double sum = 0;
        for (int g = 0; g < groups; g++) {
          sum += meanAbs[(kv * groups + g) * headDim + d];
        }
        for (int g = 0; g < groups; g++) {
          out[(kv * groups + g) * headDim + d] = (float) (sum / groups);
        }
      }
    }
    return out;
  }

  private static AwqScaleSearch.Result search(
      List<float[]> weights, int[] rows, int n, float[] meanAbs, LayerStats s, Settings settings) {
    return AwqScaleSearch.search(
        weights,
        rows,
        n,
        meanAbs,
        s.gram(),
        s.sumSq(),
        settings.groupSize(),
        settings.grid(),
        settings.bits());
  }

  private static void scaleColumns(float[] w, int rows, int cols, float[] s) {
    for (int r = 0; r < rows; r++) {
      for (int j = 0; j < cols; j++) {
        w[r * cols + j] *= s[j];
      }
    }
  }
}
