package io.distillery.model.safetensors;

import java.lang.foreign.MemorySegment;
import java.util.Arrays;
import java.util.Objects;

/**
 * A tensor held in memory: type, shape and little-endian bytes.
 *
 * @param dtype element type
 * @param shape dimensions, row-major
 * @param data the bytes; exactly product(shape) x dtype size long
 */
public record TensorData(DType dtype, long[] shape, MemorySegment data) implements TensorSource {

  public TensorData {
    Objects.requireNonNull(dtype, "dtype");
    Objects.requireNonNull(data, "data");
    shape = shape.clone();
    long elements = 1;
    for (long dim : shape) {
      if (dim < 0) {
        throw new IllegalArgumentException("negative dimension in shape " + Arrays.toString(shape));
      }
      elements = Math.multiplyExact(elements, dim);
    }
    long expected = Math.multiplyExact(elements, dtype.byteSize());
    if (data.byteSize() != expected) {
      throw new IllegalArgumentException(
          dtype
              + " shape "
              + Arrays.toString(shape)
              + " needs "
              + expected
              + " bytes, got "
              + data.byteSize());
    }
  }

  /** Floats encoded as {@code dtype} (F32, F16 or BF16; half types round to nearest even). */
  public static TensorData ofFloats(DType dtype, long[] shape, float[] values) {
    return new TensorData(dtype, shape, TensorCodec.encodeFloats(values, dtype));
  }

  /** F32 floats. */
  public static TensorData ofFloats(long[] shape, float[] values) {
    return ofFloats(DType.F32, shape, values);
  }

  /** I32 values, little-endian (one copy of the values, no intermediate byte array). */
  public static TensorData ofInts(long[] shape, int[] values) {
    MemorySegment data = MemorySegment.ofArray(new byte[Math.multiplyExact(values.length, 4)]);
    MemorySegment.copy(values, 0, data, TensorCodec.I32_LE, 0, values.length);
    return new TensorData(DType.I32, shape, data);
  }

  /** Raw little-endian bytes of any type. */
  public static TensorData ofBytes(DType dtype, long[] shape, byte[] bytes) {
    return new TensorData(dtype, shape, MemorySegment.ofArray(bytes.clone()));
  }

  @Override
  public long[] shape() {
    return shape.clone();
  }

  @Override
  public MemorySegment bytes() {
    return data;
  }

  @Override
  public boolean equals(Object other) {
    return other instanceof TensorData that
        && dtype == that.dtype
        && Arrays.equals(shape, that.shape)
        && data.byteSize() == that.data.byteSize()
        && data.mismatch(that.data) == -1;
  }

  @Override
  public int hashCode() {
    return Objects.hash(dtype, Arrays.hashCode(shape), data.byteSize());
  }

  @Override
  public String toString() {
    return "TensorData[" + dtype + Arrays.toString(shape) + ", " + data.byteSize() + " bytes]";
  }
}
