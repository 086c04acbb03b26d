package io.distillery.model.quant;

import java.util.Objects;

/**
 * One linear layer's weight after quantization, in the layout the compressed-tensors format stores: integer (or FP8)
 * codes, one scale per output row and group, and for asymmetric INT4 one signed zero point per row and group.
 * Dequantized value = (q - zeroPoint) * scale (INT) or decode(q) * scale (FP8).
 *
 * @param kind the scheme
 * @param rows out_features
 * @param cols in_features
 * @param groupSize input columns per scale ({@code cols} for per-channel)
 * @param codes {@code [rows, cols]} row-major: signed ints in [-8, 7] (INT4), [-128, 127] (INT8), or E4M3 codes 0..255
 * @param scales {@code [rows, cols / groupSize]}
 * @param zeroPoints {@code [rows, cols / groupSize]} signed, or null when symmetric
 */
public record QuantizedWeight(Kind kind, int rows, int cols, int groupSize, int[] codes, float[] scales,
    int[] zeroPoints) {

  /** The weight schemes this platform writes. */
  public enum Kind {
    /** Symmetric INT8, one scale per output channel ("int-quantized", strategy channel). */
    INT8_CHANNEL(8),
    /** Asymmetric INT4 with a scale and zero point per group ("pack-quantized", strategy group). */
    INT4_GROUP(4),
    /** FP8 E4M3 with one scale per output channel ("float-quantized", strategy channel). */
    FP8_CHANNEL(8);

    private final int bits;

    Kind(int bits) {
      this.bits = bits;
    }

    public int bits() {
      return bits;
    }
  }

  public QuantizedWeight {
    Objects.requireNonNull(kind, "kind");
    if (groupSize <= 0 || cols % groupSize != 0) {
      throw new IllegalArgumentException("group size " + groupSize + " does not divide in_features " + cols);
    }
    if (codes.length != (long) rows * cols) {
      throw new IllegalArgumentException("codes must be " + rows + "x" + cols);
    }
    if (scales.length != (long) rows * (cols / groupSize)) {
      throw new IllegalArgumentException("scales must be " + rows + "x" + cols / groupSize);
    }
    if (zeroPoints != null && zeroPoints.length != scales.length) {
      throw new IllegalArgumentException("zero points must match scales");
    }
  }

  public int groups() {
    return cols / groupSize;
  }

  /** The float weight the codes stand for, {@code [rows, cols]} row-major. */
  public float[] dequantize() {
    float[] out = new float[rows * cols];
    int groups = groups();
    for (int r = 0; r < rows; r++) {
      for (int c = 0; c < cols; c++) {
        int g = r * groups + c / groupSize;
        int q = codes[r * cols + c];
        out[r * cols + c] = kind == Kind.FP8_CHANNEL
            ? Fp8E4M3.decode(q) * scales[g]
            : (q - (zeroPoints == null ? 0 : zeroPoints[g])) * scales[g];
      }
    }
    return out;
  }

  /** Bytes on disk: codes at {@link Kind#bits()} each, F32 scales, zero points packed like the codes. */
  public long storageBytes() {
    long codeBytes = (long) rows * cols * kind.bits() / 8;
    long scaleBytes = 4L * scales.length;
    long zeroBytes = zeroPoints == null ? 0 : 4L * ((rows + 7) / 8) * groups();
    return codeBytes + scaleBytes + zeroBytes;
  }
}
