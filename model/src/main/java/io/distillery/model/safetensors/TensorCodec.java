package io.distillery.model.safetensors;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;

/**
 * Converts between tensor bytes (little-endian, as safetensors stores them) and Java {@code
 * float[]}. Half-precision types are widened and narrowed here, in Java, because DJL's PyTorch
 * engine aborts the JVM on any BF16 array (see shared/DJL.md).
 */
public final class TensorCodec {

  static final ValueLayout.OfFloat F32_LE =
      ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
  static final ValueLayout.OfShort I16_LE =
      ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
  static final ValueLayout.OfInt I32_LE =
      ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
  static final ValueLayout.OfLong I64_LE =
      ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

  /** Largest element count a Java array can hold on common JVMs. */
  static final long MAX_ARRAY_LENGTH = Integer.MAX_VALUE - 8;

  private TensorCodec() {}

  /** BF16 is the upper half of an IEEE binary32: widening is exact. */
  public static float bf16ToFloat(short bits) {
    return Float.intBitsToFloat((bits & 0xffff) << 16);
  }

  /** Narrows to BF16 with round-to-nearest-even, as {@code torch.Tensor.to(torch.bfloat16)}. */
  public static short floatToBf16(float value) {
    int bits = Float.floatToRawIntBits(value);
    if (Float.isNaN(value)) {
      return (short) ((bits >>> 16) | 0x0040);
    }
    int roundingBias = 0x7fff + ((bits >>> 16) & 1);
    return (short) ((bits + roundingBias) >>> 16);
  }

  private static final float[] F8_E4M3_VALUES = new float[256];

  static {
    for (int code = 0; code < 256; code++) {
      int exponent = (code >> 3) & 0xF;
      int mantissa = code & 7;
      float magnitude;
      if (exponent == 15 && mantissa == 7) {
        magnitude = Float.NaN; // E4M3fn has no infinities; S.1111.111 is NaN
      } else if (exponent == 0) {
        magnitude = mantissa / 8f * 0x1p-6f; // subnormal
      } else {
        magnitude = (1 + mantissa / 8f) * Math.scalb(1f, exponent - 7);
      }
      F8_E4M3_VALUES[code] = (code & 0x80) != 0 ? -magnitude : magnitude;
    }
  }

  /**
   * The value of an FP8 E4M3 ("e4m3fn", torch.float8_e4m3fn) code: 1 sign, 4 exponent bits (bias
   * 7), 3 mantissa bits, no infinities, NaN = S.1111.111. Exact.
   */
  public static float f8E4M3ToFloat(byte bits) {
    return F8_E4M3_VALUES[bits & 0xff];
  }

  /** IEEE binary16 to float (exact). */
  public static float f16ToFloat(short bits) {
    return Float.float16ToFloat(bits);
  }

  /** Float to IEEE binary16 with round-to-nearest-even. */
  public static short floatToF16(float value) {
    return Float.floatToFloat16(value);
  }

  /**
   * Reads {@code bytes} as {@code dtype} elements and widens them to float. Integer types convert
   * as Java does ({@code I64} may round); F8_E4M3 codes widen exactly (unscaled).
   *
   * @throws IllegalArgumentException if the byte size is not a whole number of elements, or the
   *     count does not fit a Java array
   */
  public static float[] decodeFloats(MemorySegment bytes, DType dtype) {
    long size = bytes.byteSize();
    if (size % dtype.byteSize() != 0) {
      throw new IllegalArgumentException(
          size + " bytes is not a whole number of " + dtype + " elements");
    }
    long count = size / dtype.byteSize();
    if (count > MAX_ARRAY_LENGTH) {
      throw new IllegalArgumentException(
          count + " elements do not fit a float[]; read the tensor's bytes in slices instead");
    }
    int n = (int) count;
    float[] out = new float[n];
    switch (dtype) {
      case F32 -> MemorySegment.copy(bytes, F32_LE, 0, out, 0, n);
      case F16, BF16 -> widenHalves(bytes, dtype == DType.BF16, out, n);
      case I8 -> {
        for (int i = 0; i < n; i++) {
          out[i] = bytes.get(ValueLayout.JAVA_BYTE, i);
        }
      }
      case U8 -> {
        for (int i = 0; i < n; i++) {
          out[i] = bytes.get(ValueLayout.JAVA_BYTE, i) & 0xff;
        }
      }
      case I32 -> {
        for (int i = 0; i < n; i++) {
          out[i] = bytes.get(I32_LE, 4L * i);
        }
      }
      case F8_E4M3 -> {
        for (int i = 0; i < n; i++) {
          out[i] = f8E4M3ToFloat(bytes.get(ValueLayout.JAVA_BYTE, i));
        }
      }
      case I64 -> {
        for (int i = 0; i < n; i++) {
          out[i] = bytes.get(I64_LE, 8L * i);
        }
      }
    }
    return out;
  }

  /**
   * Widens {@code bytes} of F32, F16 or BF16 into the first elements of {@code out}, as {@link
   * #decodeFloats(MemorySegment, DType)} would, without allocating the result (for a row at a
   * time).
   *
   * @throws IllegalArgumentException if {@code dtype} is not floating point, the size is not a
   *     whole number of elements, or {@code out} is too short
   */
  public static void decodeFloats(MemorySegment bytes, DType dtype, float[] out) {
    if (!dtype.isFloatingPoint()) {
      throw new IllegalArgumentException("cannot widen " + dtype + " into floats in place");
    }
    long size = bytes.byteSize();
    if (size % dtype.byteSize() != 0 || size / dtype.byteSize() > out.length) {
      throw new IllegalArgumentException(
          size + " bytes of " + dtype + " do not fit " + out.length + " floats");
    }
    int n = (int) (size / dtype.byteSize());
    switch (dtype) {
      case F32 -> MemorySegment.copy(bytes, F32_LE, 0, out, 0, n);
      case F16, BF16 -> widenHalves(bytes, dtype == DType.BF16, out, n);
      default -> throw new AssertionError(dtype);
    }
  }

  /** Half-precision elements widened per chunk of this many: a bulk copy, then an array loop. */
  private static final int WIDEN_CHUNK = 1 << 14;

  /**
   * Widens {@code n} F16 or BF16 elements: each chunk is bulk-copied into a {@code short[]} and
   * widened there, a loop the JIT vectorizes, instead of one bounds-checked segment read each.
   */
  private static void widenHalves(MemorySegment bytes, boolean bf16, float[] out, int n) {
    short[] chunk = new short[Math.min(n, WIDEN_CHUNK)];
    for (int from = 0; from < n; from += chunk.length) {
      int len = Math.min(chunk.length, n - from);
      MemorySegment.copy(bytes, I16_LE, 2L * from, chunk, 0, len);
      if (bf16) {
        for (int i = 0; i < len; i++) {
          out[from + i] = Float.intBitsToFloat(chunk[i] << 16);
        }
      } else {
        for (int i = 0; i < len; i++) {
          out[from + i] = Float.float16ToFloat(chunk[i]);
        }
      }
    }
  }

  /**
   * Encodes floats as little-endian {@code dtype} bytes; F16 and BF16 round to nearest even.
   *
   * @throws IllegalArgumentException if {@code dtype} is not a floating-point type
   */
  public static MemorySegment encodeFloats(float[] values, DType dtype) {
    if (!dtype.isFloatingPoint()) {
      throw new IllegalArgumentException(
          "cannot encode floats as " + dtype + "; quantize them first");
    }
    long size = (long) values.length * dtype.byteSize();
    MemorySegment out =
        size <= MAX_ARRAY_LENGTH
            ? MemorySegment.ofArray(new byte[(int) size])
            : Arena.ofAuto().allocate(size);
    switch (dtype) {
      case F32 -> MemorySegment.copy(values, 0, out, F32_LE, 0, values.length);
      case F16, BF16 -> narrowHalves(values, dtype == DType.BF16, out);
      default -> throw new AssertionError(dtype);
    }
    return out;
  }

  /**
   * The inverse of {@link #widenHalves}: narrowed per chunk into a {@code short[]}, then copied.
   */
  private static void narrowHalves(float[] values, boolean bf16, MemorySegment out) {
    short[] chunk = new short[Math.min(values.length, WIDEN_CHUNK)];
    for (int from = 0; from < values.length; from += chunk.length) {
      int len = Math.min(chunk.length, values.length - from);
      if (bf16) {
        for (int i = 0; i < len; i++) {
          chunk[i] = floatToBf16(values[from + i]);
        }
      } else {
        for (int i = 0; i < len; i++) {
          chunk[i] = Float.floatToFloat16(values[from + i]);
        }
      }
      MemorySegment.copy(chunk, 0, out, I16_LE, 2L * from, len);
    }
  }

  /** Little-endian bytes of I32 values, as safetensors stores them. */
  public static byte[] intsToBytes(int... values) {
    byte[] out = new byte[Math.multiplyExact(values.length, 4)];
    MemorySegment.copy(values, 0, MemorySegment.ofArray(out), I32_LE, 0, values.length);
    return out;
  }

  /** I32 values from little-endian bytes (a trailing partial element is ignored). */
  public static int[] bytesToInts(byte[] bytes) {
    int[] out = new int[bytes.length / 4];
    MemorySegment.copy(MemorySegment.ofArray(bytes), I32_LE, 0, out, 0, out.length);
    return out;
  }

  /** Little-endian bytes of I64 values, as safetensors stores them. */
  public static byte[] longsToBytes(long... values) {
    byte[] out = new byte[Math.multiplyExact(values.length, 8)];
    MemorySegment.copy(values, 0, MemorySegment.ofArray(out), I64_LE, 0, values.length);
    return out;
  }

  /** I64 values from little-endian bytes (a trailing partial element is ignored). */
  public static long[] bytesToLongs(byte[] bytes) {
    long[] out = new long[bytes.length / 8];
    MemorySegment.copy(MemorySegment.ofArray(bytes), I64_LE, 0, out, 0, out.length);
    return out;
  }
}
