package io.distillery.model.quant;

import io.distillery.model.safetensors.TensorCodec;
import io.distillery.model.safetensors.TensorData;
import java.util.Arrays;

/**
 * Round-to-nearest quantization of a {@code [rows, cols]} weight: symmetric INT8 per output
 * channel, INT2, INT3, INT4 or INT8 per group of input columns, symmetric (compressed-tensors'
 * W4A16 preset, vLLM's uint4b8 path) or asymmetric (min/max range widened to include 0, as GPTQ's
 * and compressed-tensors' min-max observers do), and FP8 E4M3 per output channel. The {@link Grid}
 * of one row and group is public so that GPTQ can fix it when a group starts and then quantize
 * column by column.
 */
public final class GroupQuantizer {

  public static final int INT4_MIN = -8;
  public static final int INT4_MAX = 7;

  private GroupQuantizer() {}

  /** One row-group's quantization grid: q = clamp(round(x / scale) + zero, min, max). */
  public record Grid(float scale, int zero, int min, int max) {

    /** Rounds half to even, as torch.round in compressed-tensors' quantize does. */
    public int quantize(float x) {
      int q = (int) Math.rint(x / scale) + zero;
      return Math.max(min, Math.min(max, q));
    }

    public float dequantize(int q) {
      return (q - zero) * scale;
    }

    /** x rounded onto the grid. */
    public float fakeQuantize(float x) {
      return dequantize(quantize(x));
    }

    /**
     * Asymmetric INT4 grid of values {@code w[from, to)}: scale = (max - min) / 15, signed zero
     * point.
     */
    public static Grid int4(float[] w, int from, int to) {
      return asymmetric(w, from, to, 4);
    }

    /**
     * Asymmetric grid of {@code bits} (2, 3, 4 or 8) for values {@code w[from, to)}: codes in
     * [-2^(bits-1), 2^(bits-1) - 1], scale = (max - min) / (2^bits - 1), signed zero point.
     */
    public static Grid asymmetric(float[] w, int from, int to, int bits) {
      checkBits(bits);
      int qmin = -(1 << (bits - 1));
      int qmax = (1 << (bits - 1)) - 1;
      float lo = 0;
      float hi = 0;
      for (int i = from; i < to; i++) {
        lo = Math.min(lo, w[i]);
        hi = Math.max(hi, w[i]);
      }
      if (lo == 0 && hi == 0) {
        lo = -1;
        hi = 1;
      }
      float scale = (hi - lo) / (qmax - qmin);
      int zero = (int) Math.rint(-lo / scale) + qmin;
      return new Grid(scale, Math.max(qmin, Math.min(qmax, zero)), qmin, qmax);
    }

    /**
     * Symmetric INT4 grid of values {@code w[from, to)}, as compressed-tensors' {@code
     * calculate_qparams} (quantization/utils/helpers.py) computes it for {@code symmetric: true}:
     * scale = max|w| / ((7 - (-8)) / 2) = max|w| / 7.5, zero point 0, codes clamped to [-8, 7].
     */
    public static Grid int4Symmetric(float[] w, int from, int to) {
      return symmetric(w, from, to, 4);
    }

    /**
     * Symmetric grid of {@code bits} (2, 3, 4 or 8), the same rule at any width: scale = max|w| /
     * ((qmax - qmin) / 2), zero point 0, codes clamped to [-2^(bits-1), 2^(bits-1) - 1].
     */
    public static Grid symmetric(float[] w, int from, int to, int bits) {
      checkBits(bits);
      int qmin = -(1 << (bits - 1));
      int qmax = (1 << (bits - 1)) - 1;
      float max = 0;
      for (int i = from; i < to; i++) {
        max = Math.max(max, Math.abs(w[i]));
      }
      return new Grid(max == 0 ? 1 : max / ((qmax - qmin) / 2f), 0, qmin, qmax);
    }

    /** {@link #int4Symmetric} or {@link #int4} of values {@code w[from, to)}. */
    public static Grid int4(float[] w, int from, int to, boolean symmetric) {
      return of(w, from, to, 4, symmetric);
    }

    /** {@link #symmetric} or {@link #asymmetric} of values {@code w[from, to)}. */
    public static Grid of(float[] w, int from, int to, int bits, boolean symmetric) {
      return symmetric ? symmetric(w, from, to, bits) : asymmetric(w, from, to, bits);
    }

    /** Symmetric INT8 grid of values {@code w[from, to)}: scale = max|w| / 127, zero 0. */
    public static Grid int8(float[] w, int from, int to) {
      float max = 0;
      for (int i = from; i < to; i++) {
        max = Math.max(max, Math.abs(w[i]));
      }
      return new Grid(max == 0 ? 1 : max / 127f, 0, -128, 127);
    }
  }

  /** Symmetric INT8, one scale per output row (w8-rtn, and the weights of W8A8). */
  public static QuantizedWeight int8PerChannel(float[] w, int rows, int cols) {
    check(w, rows, cols, cols);
    int[] codes = new int[rows * cols];
    float[] scales = new float[rows];
    for (int r = 0; r < rows; r++) {
      Grid grid = Grid.int8(w, r * cols, (r + 1) * cols);
      scales[r] = grid.scale();
      for (int c = 0; c < cols; c++) {
        codes[r * cols + c] = grid.quantize(w[r * cols + c]);
      }
    }
    return new QuantizedWeight(
        QuantizedWeight.Kind.INT8_CHANNEL, rows, cols, cols, codes, scales, null);
  }

  /**
   * Per-channel INT8 codes one byte each ({@code [rows, cols]} row-major) and their scales: {@link
   * #int8PerChannel}'s, held compactly.
   */
  public record Int8Channel(int rows, int cols, byte[] codes, float[] scales) {}

  /**
   * {@link #int8PerChannel(TensorData)} with the codes in bytes: a quarter of the memory, for a
   * writer that packs them straight away.
   */
  public static Int8Channel int8PerChannelBytes(TensorData weight) {
    int[] shape = matrix(weight);
    int rows = shape[0];
    int cols = shape[1];
    byte[] codes = new byte[Math.multiplyExact(rows, cols)];
    float[] scales = new float[rows];
    float[] row = new float[cols];
    long rowBytes = (long) cols * weight.dtype().byteSize();
    for (int r = 0; r < rows; r++) {
      TensorCodec.decodeFloats(weight.data().asSlice(r * rowBytes, rowBytes), weight.dtype(), row);
      Grid grid = Grid.int8(row, 0, cols);
      float scale = grid.scale();
      scales[r] = scale;
      int at = r * cols;
      for (int c = 0; c < cols; c++) {
        // Grid.quantize in float arithmetic the JIT can vectorize: below 2^22 adding and taking
        // away 1.5 x 2^23 rounds half to even exactly as Math.rint; from 2^22 on (and for
        // infinities and NaN) a float is its own rint
        float q = row[c] / scale;
        float rounded = Math.abs(q) < 0x1p22f ? (q + 0x1.8p23f) - 0x1.8p23f : q;
        codes[at + c] = (byte) Math.max(-128, Math.min(127, (int) rounded));
      }
    }
    return new Int8Channel(rows, cols, codes, scales);
  }

  /** {@code [rows, cols]} of a floating-point matrix, else IllegalArgumentException. */
  private static int[] matrix(TensorData weight) {
    long[] shape = weight.shape();
    if (shape.length != 2 || !weight.dtype().isFloatingPoint()) {
      throw new IllegalArgumentException(
          "expected a floating-point [rows, cols] weight, got "
              + weight.dtype()
              + Arrays.toString(shape));
    }
    return new int[] {Math.toIntExact(shape[0]), Math.toIntExact(shape[1])};
  }

  /**
   * {@link #int8PerChannel(float[], int, int)} of a {@code [rows, cols]} weight as a checkpoint
   * stores it (F32, F16 or BF16; half types widen exactly), one row at a time: the same codes and
   * scales, without the weight's whole F32 copy.
   *
   * @throws IllegalArgumentException if the tensor is not a floating-point matrix
   */
  public static QuantizedWeight int8PerChannel(TensorData weight) {
    Int8Channel q = int8PerChannelBytes(weight);
    int[] codes = new int[q.codes().length];
    for (int i = 0; i < codes.length; i++) {
      codes[i] = q.codes()[i];
    }
    return new QuantizedWeight(
        QuantizedWeight.Kind.INT8_CHANNEL, q.rows(), q.cols(), q.cols(), codes, q.scales(), null);
  }

  /**
   * Asymmetric INT4 with a scale and zero point per row and group of {@code groupSize} input
   * columns.
   */
  public static QuantizedWeight int4Group(float[] w, int rows, int cols, int groupSize) {
    return intGroup(w, rows, cols, groupSize, 4, false);
  }

  /**
   * INT4 with a scale per row and group of {@code groupSize} input columns (w4-rtn): symmetric (no
   * zero points) or asymmetric (a signed zero point per row and group).
   */
  public static QuantizedWeight int4Group(
      float[] w, int rows, int cols, int groupSize, boolean symmetric) {
    return intGroup(w, rows, cols, groupSize, 4, symmetric);
  }

  /**
   * Asymmetric integer codes of {@code bits} (2, 3, 4 or 8) with a scale and zero point per row and
   * group of {@code groupSize} input columns.
   */
  public static QuantizedWeight intGroup(float[] w, int rows, int cols, int groupSize, int bits) {
    return intGroup(w, rows, cols, groupSize, bits, false);
  }

  /**
   * Integer codes of {@code bits} (2, 3, 4 or 8) with a scale per row and group of {@code
   * groupSize} input columns, symmetric (no zero points) or asymmetric (a signed zero point per row
   * and group).
   */
  public static QuantizedWeight intGroup(
      float[] w, int rows, int cols, int groupSize, int bits, boolean symmetric) {
    check(w, rows, cols, groupSize);
    checkBits(bits);
    int groups = cols / groupSize;
    int[] codes = new int[rows * cols];
    float[] scales = new float[rows * groups];
    int[] zeros = new int[rows * groups];
    for (int r = 0; r < rows; r++) {
      for (int g = 0; g < groups; g++) {
        int from = r * cols + g * groupSize;
        Grid grid = Grid.of(w, from, from + groupSize, bits, symmetric);
        scales[r * groups + g] = grid.scale();
        zeros[r * groups + g] = grid.zero();
        for (int i = from; i < from + groupSize; i++) {
          codes[i] = grid.quantize(w[i]);
        }
      }
    }
    return new QuantizedWeight(
        QuantizedWeight.Kind.INT4_GROUP,
        rows,
        cols,
        groupSize,
        codes,
        scales,
        symmetric ? null : zeros,
        bits);
  }

  /** The INT4 round trip Q(w) as floats, without keeping the codes (AWQ's search loop). */
  public static float[] int4FakeQuantize(float[] w, int rows, int cols, int groupSize) {
    return fakeQuantize(w, rows, cols, groupSize, 4);
  }

  /**
   * The asymmetric {@code bits}-wide group round trip Q(w) as floats, without keeping the codes.
   */
  public static float[] fakeQuantize(float[] w, int rows, int cols, int groupSize, int bits) {
    check(w, rows, cols, groupSize);
    checkBits(bits);
    float[] out = new float[w.length];
    for (int start = 0; start < w.length; start += groupSize) {
      Grid grid = Grid.asymmetric(w, start, start + groupSize, bits);
      for (int i = start; i < start + groupSize; i++) {
        out[i] = grid.fakeQuantize(w[i]);
      }
    }
    return out;
  }

  /** FP8 E4M3 with one scale per output row: scale = max|w| / 448, code = e4m3(w / scale). */
  public static QuantizedWeight fp8PerChannel(float[] w, int rows, int cols) {
    check(w, rows, cols, cols);
    int[] codes = new int[rows * cols];
    float[] scales = new float[rows];
    for (int r = 0; r < rows; r++) {
      float max = 0;
      for (int c = 0; c < cols; c++) {
        max = Math.max(max, Math.abs(w[r * cols + c]));
      }
      float scale = max == 0 ? 1 : max / Fp8E4M3.MAX;
      scales[r] = scale;
      for (int c = 0; c < cols; c++) {
        codes[r * cols + c] = Fp8E4M3.encode(w[r * cols + c] / scale);
      }
    }
    return new QuantizedWeight(
        QuantizedWeight.Kind.FP8_CHANNEL, rows, cols, cols, codes, scales, null);
  }

  /**
   * @throws IllegalArgumentException unless {@code bits} is 2, 3, 4 or 8
   */
  public static void checkBits(int bits) {
    if (bits != 2 && bits != 3 && bits != 4 && bits != 8) {
      throw new IllegalArgumentException("bits: must be 2, 3, 4 or 8, got " + bits);
    }
  }

  private static void check(float[] w, int rows, int cols, int groupSize) {
    if (w.length != (long) rows * cols) {
      throw new IllegalArgumentException(
          "weight has " + w.length + " elements, expected " + rows + "x" + cols);
    }
    if (groupSize <= 0 || cols % groupSize != 0) {
      throw new IllegalArgumentException(
          "groupSize " + groupSize + " does not divide in_features " + cols);
    }
  }
}
