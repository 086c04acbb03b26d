package io.distillery.quantizer.rtn;

import io.distillery.model.quant.GroupQuantizer;
import io.distillery.model.quant.QuantizedWeight;

/** Round-to-nearest quantization of a weight into a stored kind: the baseline, and the last step of AWQ/SmoothQuant. */
public final class RoundToNearest {

  private RoundToNearest() {}

  public static QuantizedWeight quantize(QuantizedWeight.Kind kind, float[] w, int rows, int cols, int groupSize) {
    return quantize(kind, w, rows, cols, groupSize, false);
  }

  /** As {@link #quantize(QuantizedWeight.Kind, float[], int, int, int)}; INT4 on the symmetric grid if asked. */
  public static QuantizedWeight quantize(QuantizedWeight.Kind kind, float[] w, int rows, int cols, int groupSize,
      boolean symmetric) {
    return switch (kind) {
      case INT8_CHANNEL -> GroupQuantizer.int8PerChannel(w, rows, cols);
      case INT4_GROUP -> GroupQuantizer.int4Group(w, rows, cols, groupSize, symmetric);
      case FP8_CHANNEL -> GroupQuantizer.fp8PerChannel(w, rows, cols);
    };
  }
}
