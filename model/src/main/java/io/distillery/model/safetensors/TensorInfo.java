package io.distillery.model.safetensors;

import java.util.Arrays;
import java.util.Objects;

/**
 * One validated header entry: where a tensor's bytes lie in the data buffer of its file.
 *
 * @param name the tensor name
 * @param dtype element type
 * @param shape dimensions, row-major; empty for a scalar
 * @param begin first byte, relative to the data buffer
 * @param end one past the last byte, relative to the data buffer
 */
public record TensorInfo(String name, DType dtype, long[] shape, long begin, long end) {

  public TensorInfo {
    Objects.requireNonNull(name, "name");
    Objects.requireNonNull(dtype, "dtype");
    shape = shape.clone();
  }

  @Override
  public long[] shape() {
    return shape.clone();
  }

  public int rank() {
    return shape.length;
  }

  public long dim(int axis) {
    return shape[axis];
  }

  /** Product of the dimensions (1 for a scalar). */
  public long elementCount() {
    long count = 1;
    for (long dim : shape) {
      count *= dim;
    }
    return count;
  }

  public long byteSize() {
    return end - begin;
  }

  @Override
  public boolean equals(Object other) {
    return other instanceof TensorInfo that
        && name.equals(that.name)
        && dtype == that.dtype
        && Arrays.equals(shape, that.shape)
        && begin == that.begin
        && end == that.end;
  }

  @Override
  public int hashCode() {
    return Objects.hash(name, dtype, Arrays.hashCode(shape), begin, end);
  }

  @Override
  public String toString() {
    return name + " " + dtype + Arrays.toString(shape) + " [" + begin + ", " + end + ")";
  }
}
