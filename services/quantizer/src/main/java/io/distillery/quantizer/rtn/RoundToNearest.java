package io.distillery.quantizer.rtn;

import io.distillery.model.quant.GroupQuantizer;
import io.distillery.model.quant.QuantizedWeight;
import io.distillery.model.safetensors.TensorCodec;
import io.distillery.model.safetensors.TensorData;

/**
 * Round-to-nearest quantization of a weight into a stored kind: the baseline, and the last step of
 * AWQ/SmoothQuant.
 */
public final class RoundToNearest {

  private RoundToNearest() {}

  public static QuantizedWeight quantize(
      QuantizedWeight.Kind kind, float[] w, int rows, int cols, int groupSize) {
    return quantize(kind, w, rows, cols, groupSize, kind.bits(), false);
  }

  /**
   * As {@link #quantize(QuantizedWeight.Kind, float[], int, int, int)}; INT4 on the symmetric grid
   * if asked.
   */
  public static QuantizedWeight quantize(
      QuantizedWeight.Kind kind, float[] w, int rows, int cols, int groupSize, boolean symmetric) {
    return quantize(kind, w, rows, cols, groupSize, kind.bits(), symmetric);
  }

  /**
   * @param bits code width of {@link QuantizedWeight.Kind#INT4_GROUP} (2, 3, 4 or 8); the other
   *     kinds are 8-bit
   */
  public static QuantizedWeight quantize(
      QuantizedWeight.Kind kind, float[] w, int rows, int cols, int groupSize, int bits) {
    return quantize(kind, w, rows, cols, groupSize, bits, false);
  }

  /**
   * @param bits code width of {@link QuantizedWeight.Kind#INT4_GROUP} (2, 3, 4 or 8); the other
   *     kinds are 8-bit
   * @param symmetric group codes without zero points
   */
  public static QuantizedWeight quantize(
      QuantizedWeight.Kind kind,
      float[] w,
      int rows,
      int cols,
      int groupSize,
      int bits,
      boolean symmetric) {
    if (kind != QuantizedWeight.Kind.INT4_GROUP && bits != 8) {
      throw new IllegalArgumentException(kind + " is 8-bit only, got bits " + bits);
    }
    return switch (kind) {
      case INT8_CHANNEL -> GroupQuantizer.int8PerChannel(w, rows, cols);
      case INT4_GROUP -> GroupQuantizer.intGroup(w, rows, cols, groupSize, bits, symmetric);
      case FP8_CHANNEL -> GroupQuantizer.fp8PerChannel(w, rows, cols);
    };
  }

  /**
   * As {@link #quantize(QuantizedWeight.Kind, float[], int, int, int, int, boolean)} of a {@code
   * [rows, cols]} weight as the checkpoint stores it: the same codes and scales; per-channel INT8
   * widens one row at a time (no F32 copy of the weight), the other kinds widen the weight first.
   */
  public static QuantizedWeight quantize(
      QuantizedWeight.Kind kind, TensorData weight, int groupSize, int bits, boolean symmetric) {
    if (kind == QuantizedWeight.Kind.INT8_CHANNEL && bits == 8) {
      return GroupQuantizer.int8PerChannel(weight);
    }
    long[] shape = weight.shape();
    if (shape.length != 2) {
      throw new IllegalArgumentException(
          "expected a [rows, cols] weight, got " + shape.length + "-d");
    }
    return quantize(
        kind,
        TensorCodec.decodeFloats(weight.data(), weight.dtype()),
        Math.toIntExact(shape[0]),
        Math.toIntExact(shape[1]),
        groupSize,
        bits,
        symmetric);
  }
}
