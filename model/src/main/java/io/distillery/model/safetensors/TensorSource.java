package io.distillery.model.safetensors;

import java.io.IOException;
import java.lang.foreign.MemorySegment;

/**
 * A tensor to be written: its type and shape are known up front (they go in the header), its bytes
 * are asked for once, when the writer reaches it. This lets a writer stream a model larger than the
 * heap, one tensor at a time.
 */
public interface TensorSource {

  DType dtype();

  long[] shape();

  /**
   * The tensor's bytes, little-endian and row-major; exactly product(shape) x dtype size long.
   * Called at most once per write.
   */
  MemorySegment bytes() throws IOException;

  /** Product of the dimensions (1 for a scalar). */
  default long elementCount() {
    long count = 1;
    for (long dim : shape()) {
      count = Math.multiplyExact(count, dim);
    }
    return count;
  }

  /** A source whose bytes are computed when the writer reaches it. */
  static TensorSource lazy(DType dtype, long[] shape, BytesSupplier bytes) {
    long[] copy = shape.clone();
    return new TensorSource() {
      @Override
      public DType dtype() {
        return dtype;
      }

      @Override
      public long[] shape() {
        return copy.clone();
      }

      @Override
      public MemorySegment bytes() throws IOException {
        return bytes.get();
      }
    };
  }

  /** Supplies bytes for {@link #lazy}; may do I/O. */
  @FunctionalInterface
  interface BytesSupplier {
    MemorySegment get() throws IOException;
  }
}
