package io.distillery.model.linalg;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import java.nio.ByteOrder;
import java.nio.FloatBuffer;
import java.util.Arrays;
import java.util.stream.IntStream;

/**
 * The lazy batch update GPTQ (arXiv 2210.17323, section 3 "Lazy Batch-Updates", Algorithm 1 line
 * {@code W[:, i2:] -= E . H^-1[i1:i2, i2:]}) and SparseGPT (arXiv 2301.00774, Algorithm 1) apply
 * once per block of columns: the block's scaled errors E ({@code rows x (b1 - b0)}) times the rows
 * of U, the upper Cholesky factor of H^-1, for the columns after the block. It is one float32
 * matrix product (the authors' code works in float32 too) on DJL's native engine (multi-threaded
 * BLAS) rather than a scalar loop, in row chunks read straight from the engine's memory (GPTQ's
 * working memory is issue 16's limit at real widths); products too small to repay the copy run in
 * Java.
 */
public final class TrailingUpdate {

  /** Below this many multiply-adds the product runs in Java. */
  static final long NATIVE_MIN_MACS = 1L << 21;

  /** Largest result of one native product, in floats (16 MB); larger updates go in row chunks. */
  static final int CHUNK_FLOATS = 1 << 22;

  private static final String ENGINE = "PyTorch";

  private TrailingUpdate() {}

  /**
   * {@code w[:, b1:] -= err . u[b0:b1, b1:]}.
   *
   * @param w {@code [rows, cols]} row-major, updated in place
   * @param err {@code [rows, b1 - b0]} row-major: the block's errors, each already divided by its
   *     U_kk
   * @param u {@code [cols, cols]} row-major, upper triangular
   */
  public static void subtractProduct(
      float[] w, int rows, int cols, float[] err, int b0, int b1, float[] u) {
    subtractProduct(w, rows, cols, err, b0, b1, u, cols);
  }

  /**
   * {@code w[:, b1:end] -= err . u[b0:b1, b1:end]}: the update of only the columns before {@code
   * end} (an inner block inside a larger lazy block).
   */
  public static void subtractProduct(
      float[] w, int rows, int cols, float[] err, int b0, int b1, float[] u, int end) {
    int width = b1 - b0;
    int rest = end - b1;
    if (err.length != (long) rows * width) {
      throw new IllegalArgumentException(
          "errors must be " + rows + "x" + width + ", got " + err.length);
    }
    if (rest <= 0 || rows == 0 || width == 0) {
      return;
    }
    if ((long) rows * width * rest < NATIVE_MIN_MACS) {
      IntStream.range(0, rows)
          .parallel()
          .forEach(
              r -> {
                int row = r * cols;
                for (int k = b0; k < b1; k++) {
                  float e = err[r * width + k - b0];
                  if (e == 0) {
                    continue;
                  }
                  int urow = k * cols;
                  for (int j = b1; j < end; j++) {
                    w[row + j] -= e * u[urow + j];
                  }
                }
              });
      return;
    }
    float[] ublock = new float[width * rest];
    for (int k = 0; k < width; k++) {
      System.arraycopy(u, (b0 + k) * cols + b1, ublock, k * rest, rest);
    }
    // rows go in chunks so that no product's result exceeds CHUNK_FLOATS; it is read in place,
    // never copied
    int chunk = (int) Math.max(1, Math.min(rows, CHUNK_FLOATS / rest));
    try (NDManager manager = Engine.getEngine(ENGINE).newBaseManager()) {
      NDArray ub = manager.create(ublock, new Shape(width, rest));
      for (int r0 = 0; r0 < rows; r0 += chunk) {
        int r1 = Math.min(r0 + chunk, rows);
        try (NDManager step = manager.newSubManager()) {
          NDArray e =
              step.create(
                  Arrays.copyOfRange(err, r0 * width, r1 * width), new Shape(r1 - r0, width));
          NDArray product = e.matMul(ub);
          // read in place from the engine's memory: no rows x rest copy on the heap
          FloatBuffer delta =
              product.toByteBuffer(true).order(ByteOrder.nativeOrder()).asFloatBuffer();
          int first = r0;
          int last = r1;
          int parts = Math.min(r1 - r0, 4 * Runtime.getRuntime().availableProcessors());
          IntStream.range(0, parts)
              .parallel()
              .forEach(
                  p -> {
                    // each part copies a row of the product into its own array, then subtracts
                    // in a loop the JIT vectorises
                    float[] d = new float[rest];
                    for (int r = first + p; r < last; r += parts) {
                      delta.get((r - first) * rest, d, 0, rest);
                      int row = r * cols + b1;
                      for (int j = 0; j < rest; j++) {
                        w[row + j] -= d[j];
                      }
                    }
                  });
        }
      }
    }
  }
}
