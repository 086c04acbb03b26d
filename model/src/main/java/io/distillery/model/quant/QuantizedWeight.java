package io.distillery.model.quant;

import java.util.Objects;
import java.util.Set;
import java.util.TreeSet;

/**
 * One linear layer's weight after quantization, in the layout the compressed-tensors format stores:
 * integer (or FP8) codes, one scale per output row and group, and for asymmetric INT4 one signed
 * zero point per row and group. Dequantized value = (q - zeroPoint) * scale (INT) or decode(q) *
 * scale (FP8).
 *
 * @param kind the scheme
 * @param rows out_features
 * @param cols in_features
 * @param groupSize input columns per scale ({@code cols} for per-channel)
 * @param codes {@code [rows, cols]} row-major: signed ints in [-2^(bits-1), 2^(bits-1) - 1] (INT
 *     group: [-8, 7] at 4 bits), [-128, 127] (INT8 channel), or E4M3 codes 0..255
 * @param scales {@code [rows, cols / groupSize]}
 * @param zeroPoints {@code [rows, cols / groupSize]} signed, or null when symmetric
 * @param bits bits per code: 2, 3, 4 or 8 for {@link Kind#INT4_GROUP} (asymmetric integer groups of
 *     any of these widths; the kind's name is historical), 8 for the per-channel kinds
 */
public record QuantizedWeight(
    Kind kind,
    int rows,
    int cols,
    int groupSize,
    int[] codes,
    float[] scales,
    int[] zeroPoints,
    int bits) {

  /** The weight schemes this platform writes. */
  public enum Kind {
    /** Symmetric INT8, one scale per output channel ("int-quantized", strategy channel). */
    INT8_CHANNEL(8),
    /**
     * Asymmetric integer codes with a scale and zero point per group ("pack-quantized", strategy
     * group): 4 bits by default, or 2, 3 or 8 as {@link QuantizedWeight#bits()} says.
     */
    INT4_GROUP(4),
    /** FP8 E4M3 with one scale per output channel ("float-quantized", strategy channel). */
    FP8_CHANNEL(8);

    private final int bits;

    Kind(int bits) {
      this.bits = bits;
    }

    /**
     * The default width of the kind's codes; a weight's own width is {@link
     * QuantizedWeight#bits()}.
     */
    public int bits() {
      return bits;
    }
  }

  /** The widths an asymmetric integer group weight may have. */
  public static final Set<Integer> GROUP_BITS = Set.of(2, 3, 4, 8);

  /** A weight at its kind's default width ({@link Kind#bits()}). */
  public QuantizedWeight(
      Kind kind, int rows, int cols, int groupSize, int[] codes, float[] scales, int[] zeroPoints) {
    this(kind, rows, cols, groupSize, codes, scales, zeroPoints, kind.bits());
  }

  public QuantizedWeight {
    Objects.requireNonNull(kind, "kind");
    if (groupSize <= 0 || cols % groupSize != 0) {
      throw new IllegalArgumentException(
          "group size " + groupSize + " does not divide in_features " + cols);
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
    if (kind == Kind.INT4_GROUP ? !GROUP_BITS.contains(bits) : bits != kind.bits()) {
      throw new IllegalArgumentException(
          kind
              + " cannot hold "
              + bits
              + "-bit codes"
              + (kind == Kind.INT4_GROUP ? "; group widths are " + new TreeSet<>(GROUP_BITS) : ""));
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
        out[r * cols + c] =
            kind == Kind.FP8_CHANNEL
                ? Fp8E4M3.decode(q) * scales[g]
                : (q - (zeroPoints == null ? 0 : zeroPoints[g])) * scales[g];
      }
    }
    return out;
  }

  /**
   * Bytes on disk: INT group codes and zero points packed as compressed-tensors pack-quantized does
   * (32 / bits values per int32: 8 at 4 bits, 10 at 3), other codes one byte each, F32 scales.
   */
  public long storageBytes() {
    long scaleBytes = 4L * scales.length;
    if (kind != Kind.INT4_GROUP) {
      return (long) rows * cols + scaleBytes;
    }
    int perInt = 32 / bits;
    long codeBytes = 4L * rows * ((cols + perInt - 1) / perInt);
    long zeroBytes = zeroPoints == null ? 0 : 4L * ((rows + perInt - 1) / perInt) * groups();
    return codeBytes + scaleBytes + zeroBytes;
  }
}
