package io.distillery.model.quant;

import java.util.List;
import java.util.Objects;

/**
 * What a compressed-tensors checkpoint declares in its {@code quantization_config}: the weight kind, the group size
 * (INT4), whether input activations are statically quantized per tensor (W8A8), and the modules left dense.
 */
public record QuantizationScheme(QuantizedWeight.Kind kind, int groupSize, boolean staticInputActivations,
    List<String> ignore) {

  public QuantizationScheme {
    Objects.requireNonNull(kind, "kind");
    ignore = List.copyOf(ignore);
    if (staticInputActivations && kind != QuantizedWeight.Kind.INT8_CHANNEL) {
      throw new IllegalArgumentException("static input activations are written for INT8 weights (W8A8) only");
    }
  }

  /** compressed-tensors' {@code format}. */
  public String format() {
    return switch (kind) {
      case INT4_GROUP -> "pack-quantized";
      case INT8_CHANNEL -> "int-quantized";
      case FP8_CHANNEL -> "float-quantized";
    };
  }
}
