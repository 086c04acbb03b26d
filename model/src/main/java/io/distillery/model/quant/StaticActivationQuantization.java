package io.distillery.model.quant;

import ai.djl.ndarray.NDArray;
import io.distillery.model.llama.LinearInputTransform;
import java.util.Map;

/**
 * Simulates W8A8 inference in float: before each listed linear layer runs, its input is quantized
 * to symmetric INT8 with that layer's static per-tensor scale and dequantized again, x' =
 * clamp(round(x / s), -128, 127) * s, exactly what an INT8 GEMM with a static input quantizer
 * (compressed-tensors {@code input_activations}: int, 8 bits, strategy tensor, dynamic false)
 * computes up to accumulation order. Without it a W8A8 checkpoint would be evaluated as weight-only
 * W8A16 and its perplexity would look better than the deployed model's.
 */
public final class StaticActivationQuantization implements LinearInputTransform {

  private static final int QMIN = -128;
  private static final int QMAX = 127;

  private final Map<String, Float> scales;

  /**
   * @param scales static input scale by module name; modules not listed run unquantized
   */
  public StaticActivationQuantization(Map<String, Float> scales) {
    for (Map.Entry<String, Float> e : scales.entrySet()) {
      if (!(e.getValue() > 0) || e.getValue().isInfinite()) {
        throw new IllegalArgumentException(
            "input_scale of " + e.getKey() + " must be a positive number, got " + e.getValue());
      }
    }
    this.scales = Map.copyOf(scales);
  }

  public Map<String, Float> scales() {
    return scales;
  }

  @Override
  public NDArray apply(String module, NDArray input) {
    Float scale = scales.get(module);
    if (scale == null) {
      return input;
    }
    // torch.round rounds half to even, as compressed-tensors' quantize does
    return input.div(scale).round().clip(QMIN, QMAX).mul(scale);
  }
}
