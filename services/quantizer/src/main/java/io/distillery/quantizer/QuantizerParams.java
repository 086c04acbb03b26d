package io.distillery.quantizer;

import java.util.List;

/**
 * Params of the quantizer stage, validated here (an IllegalArgumentException names the param and fails the job as
 * non-retryable). Widths are checked against the model when the stage runs.
 *
 * @param scheme one of {@link Scheme#ids()}
 * @param groupSize input columns per INT4 scale (default 128); must divide every quantized layer's in_features
 * @param alpha SmoothQuant migration strength in [0, 1] (default 0.5)
 * @param damp GPTQ dampening, fraction of mean(diag H) (default 0.01)
 * @param actOrder GPTQ: quantize columns by decreasing diag(H) (default false)
 * @param awqGrid AWQ: number of exponents r on the grid over [0, 1) (default 20)
 * @param exclude modules left dense: exact names or name suffixes (default ["lm_head"])
 * @param sequential streamed GPTQ: calibrate layer i+1 on the outputs of the already quantized layer i, as the GPTQ
 *     reference code and llm-compressor's sequential pipeline do (default true); false takes every layer's statistics
 *     from the original model in one pass, as a whole-model calibration does
 * @param streaming run on the layer-streaming executor: null (the default) streams every scheme it supports (w8-rtn,
 *     w4-rtn, fp8, and w4-gptq when the calibration carries its token ids), true requires it, false keeps the whole
 *     model in memory
 */
public record QuantizerParams(String scheme, Integer groupSize, Double alpha, Double damp, Boolean actOrder,
    Integer awqGrid, List<String> exclude, Boolean sequential, Boolean streaming) {

  /** Params without the executor settings (sequential, streaming by default where supported). */
  public QuantizerParams(String scheme, Integer groupSize, Double alpha, Double damp, Boolean actOrder,
      Integer awqGrid, List<String> exclude) {
    this(scheme, groupSize, alpha, damp, actOrder, awqGrid, exclude, null, null);
  }

  public QuantizerParams {
    if (scheme == null) {
      throw new IllegalArgumentException("scheme: required; one of " + Scheme.ids());
    }
    Scheme.of(scheme);
    groupSize = groupSize == null ? 128 : groupSize;
    alpha = alpha == null ? 0.5 : alpha;
    damp = damp == null ? 0.01 : damp;
    actOrder = actOrder != null && actOrder;
    awqGrid = awqGrid == null ? 20 : awqGrid;
    exclude = exclude == null ? List.of("lm_head") : List.copyOf(exclude);
    sequential = sequential == null || sequential;
    if (groupSize <= 0) {
      throw new IllegalArgumentException("groupSize: must be positive, got " + groupSize);
    }
    if (!(alpha >= 0 && alpha <= 1)) {
      throw new IllegalArgumentException("alpha: must lie in [0, 1], got " + alpha);
    }
    if (!(damp > 0 && damp < 1)) {
      throw new IllegalArgumentException("damp: must lie in (0, 1), got " + damp);
    }
    if (awqGrid < 1) {
      throw new IllegalArgumentException("awqGrid: must be at least 1, got " + awqGrid);
    }
  }

  public Scheme schemeValue() {
    return Scheme.of(scheme);
  }

  /** Whether {@code module} is excluded: equal to an entry, or ending with "." + entry. */
  public boolean excludes(String module) {
    return exclude.stream().anyMatch(e -> module.equals(e) || module.endsWith("." + e));
  }
}
