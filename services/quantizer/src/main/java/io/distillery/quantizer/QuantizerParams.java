package io.distillery.quantizer;

import io.distillery.model.quant.VllmConstraints;
import io.distillery.quantizer.smoothquant.InputScale;
import java.util.List;
import java.util.Map;

/**
 * Params of the quantizer stage, validated here (an IllegalArgumentException names the param and
 * fails the job as non-retryable). Widths are checked against the model when the stage runs.
 *
 * @param scheme one of {@link Scheme#ids()}
 * @param groupSize input columns per INT4 scale (default 128); must divide every quantized layer's
 *     in_features
 * @param alpha SmoothQuant migration strength in [0, 1] (default 0.5)
 * @param damp GPTQ dampening, fraction of mean(diag H) (default 0.01)
 * @param actOrder GPTQ: quantize columns by decreasing diag(H) (default false)
 * @param awqGrid AWQ: number of exponents r on the grid over [0, 1) (default 20)
 * @param exclude modules left dense: exact names or name suffixes (default ["lm_head"]); must keep
 *     lm_head dense and may not split a fused group (q/k/v, gate/up), as vLLM's loader requires
 *     (see {@link VllmConstraints})
 * @param symmetric group schemes: symmetric weights without zero points (default true:
 *     compressed-tensors' W4A16 preset, the layout every vLLM release and Marlin load); false keeps
 *     the asymmetric grid with zero points (vLLM loads it from PR #14211, 2025)
 * @param bits code width: 2, 3, 4 or 8 for the group schemes (w4-rtn, w4-awq, w4-gptq; default 4,
 *     groups of {@code groupSize} at any of these widths); the per-channel schemes (w8-rtn,
 *     w8a8-smoothquant, fp8) are 8-bit only (default 8)
 * @param inputScale W8A8 static input scale: absmax, entropy (KL clip of the calibration histogram)
 *     or auto (the one with the lower expected output error on the calibration statistics; default)
 * @param sequential the streamed calibrated schemes (w4-gptq, w4-awq, w8a8-smoothquant): calibrate
 *     layer i+1 on the outputs of the already quantized layer i, as the GPTQ reference code and
 *     llm-compressor's sequential pipeline do (default true; for W8A8 the re-run simulates the
 *     static INT8 inputs); false takes every layer's statistics from the original model in one
 *     pass, as a whole-model calibration does
 * @param streaming run on the layer-streaming executor: null (the default) streams every scheme
 *     (w8-rtn, w4-rtn, fp8; w4-gptq, w4-awq and w8a8-smoothquant when the calibration carries its
 *     token ids), true requires it, false keeps the whole model in memory
 */
public record QuantizerParams(
    String scheme,
    Integer groupSize,
    Double alpha,
    Double damp,
    Boolean actOrder,
    Integer awqGrid,
    List<String> exclude,
    Boolean symmetric,
    Integer bits,
    String inputScale,
    Boolean sequential,
    Boolean streaming) {

  /** The params with only the first seven given (every later one at its default). */
  public QuantizerParams(
      String scheme,
      Integer groupSize,
      Double alpha,
      Double damp,
      Boolean actOrder,
      Integer awqGrid,
      List<String> exclude) {
    this(scheme, groupSize, alpha, damp, actOrder, awqGrid, exclude, null, null, null, null, null);
  }

  public QuantizerParams {
    if (scheme == null) {
      throw new IllegalArgumentException("scheme: required; one of " + Scheme.ids());
    }
    Scheme parsed = Scheme.of(scheme);
    groupSize = groupSize == null ? 128 : groupSize;
    alpha = alpha == null ? 0.5 : alpha;
    damp = damp == null ? 0.01 : damp;
    actOrder = actOrder != null && actOrder;
    awqGrid = awqGrid == null ? 20 : awqGrid;
    exclude = exclude == null ? List.of("lm_head") : List.copyOf(exclude);
    bits = bits == null ? parsed.kind().bits() : bits;
    inputScale = inputScale == null ? InputScale.AUTO.id() : InputScale.of(inputScale).id();
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
    if (parsed.grouped() && bits != 2 && bits != 3 && bits != 4 && bits != 8) {
      throw new IllegalArgumentException("bits: " + scheme + " takes 2, 3, 4 or 8, got " + bits);
    }
    if (!parsed.grouped() && bits != 8) {
      throw new IllegalArgumentException(
          "bits: "
              + scheme
              + " is 8-bit only, got "
              + bits
              + "; for narrower codes use w4-rtn, w4-awq or w4-gptq with bits "
              + bits);
    }
    symmetric = symmetric == null || symmetric;
    if (!symmetric && !Scheme.of(scheme).grouped()) {
      throw new IllegalArgumentException(
          "symmetric: false applies to the INT4 group schemes only; "
              + scheme
              + " weights are symmetric");
    }
    checkExclude(exclude);
  }

  /**
   * The exclude list must keep lm_head dense (vLLM's compressed_tensors.py get_quant_method
   * quantizes linear layers only: a quantized lm_head does not load, see {@link
   * VllmConstraints#checkQuantizable}) and may not exclude part of a fused group
   * (compressed_tensors/utils.py should_ignore_layer raises when q/k/v or gate/up differ).
   */
  private static void checkExclude(List<String> exclude) {
    for (String entry : exclude) {
      int dot = entry.lastIndexOf('.');
      String prefix = entry.substring(0, dot + 1);
      String leaf = entry.substring(dot + 1);
      for (Map.Entry<String, List<String>> fused : VllmConstraints.FUSED_SHARDS.entrySet()) {
        if (!fused.getValue().contains(leaf)) {
          continue;
        }
        List<String> missing =
            fused.getValue().stream().filter(shard -> !excludes(exclude, prefix + shard)).toList();
        if (!missing.isEmpty()) {
          throw new IllegalArgumentException(
              "exclude: \""
                  + entry
                  + "\" splits the fused group "
                  + fused.getKey()
                  + " "
                  + fused.getValue()
                  + " ("
                  + missing
                  + " would stay quantized); vLLM requires all shards of a "
                  + "fused layer to share one scheme (compressed_tensors/utils.py should_ignore_layer): exclude all of "
                  + fused.getValue()
                  + " or none");
        }
      }
    }
    if (exclude.stream().noneMatch(e -> e.equals("lm_head"))) {
      throw new IllegalArgumentException(
          "exclude: must contain \"lm_head\" (got "
              + exclude
              + "): vLLM loads "
              + "compressed-tensors weights into linear layers only and its ParallelLMHead has no weight_packed/"
              + "weight_scale (compressed_tensors.py get_quant_method), so a quantized lm_head does not load");
    }
  }

  private static boolean excludes(List<String> exclude, String module) {
    return exclude.stream().anyMatch(e -> module.equals(e) || module.endsWith("." + e));
  }

  public InputScale inputScaleValue() {
    return InputScale.of(inputScale);
  }

  public Scheme schemeValue() {
    return Scheme.of(scheme);
  }

  /** Whether {@code module} is excluded: equal to an entry, or ending with "." + entry. */
  public boolean excludes(String module) {
    return excludes(exclude, module);
  }
}
