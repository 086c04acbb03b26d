package io.distillery.quantizer.gptq;

import io.distillery.model.linalg.HessianInverse;
import io.distillery.model.linalg.TrailingUpdate;
import io.distillery.model.quant.GroupQuantizer;
import io.distillery.model.quant.QuantizedWeight;
import java.util.Arrays;
import java.util.stream.IntStream;

/**
 * GPTQ (Frantar et al., arXiv 2210.17323, Algorithm 1): quantizes a weight column by column and
 * spreads each column's rounding error over the columns not yet quantized, weighted by the rows of
 * U, the upper Cholesky factor of the dampened inverse Hessian (H^-1 = U^T U, H = 2 X^T X /
 * tokens). Updates are applied lazily (Section 3, "Lazy Batch-Updates"): inside an inner block of
 * {@value #INNER} columns at once in Java (rows in parallel), to the rest of the block of {@value
 * #BLOCK} columns and, once per block, to the rest of the matrix as native matrix products {@code
 * W[:, b1:] -= E U[b0:b1, b1:]} ({@link TrailingUpdate}). Group-wise asymmetric grids of 2, 3, 4 or
 * 8 bits are fixed when a group's first column is reached (so they see the error already propagated
 * into it); with act-order, columns go in order of decreasing diag(H) and the grids are fixed up
 * front per original group ("static groups"), so that no g_idx has to be stored.
 *
 * <p>Float32 throughout, as in the authors' gptq.py (H, its Cholesky factor, W and the errors): at
 * real widths the n x n Hessian is the working set (268 MB at n = 8192, 822 MB at n = 14336). The
 * float overload takes the Hessian over: without act-order it is the one n x n array alive, which
 * {@link HessianInverse#upperCholeskyOfInverseInPlace} overwrites with U (with act-order a permuted
 * copy is made and the caller's can be dropped); plus W and the codes.
 */
public final class Gptq {

  static final int BLOCK = 128;

  /**
   * Columns per inner block: the scalar part of the work is rows x cols x INNER / 2 multiply-adds.
   */
  static final int INNER = 32;

  private Gptq() {}

  /**
   * INT4 GPTQ.
   *
   * @param weight {@code [rows, cols]} row-major
   * @param hessian {@code [cols, cols]} row-major, H = 2 X^T X / tokens
   * @param damp fraction of mean(diag H) added to the diagonal
   */
  public static QuantizedWeight quantize(
      float[] weight,
      int rows,
      int cols,
      double[] hessian,
      int groupSize,
      double damp,
      boolean actOrder) {
    return quantize(weight, rows, cols, hessian, groupSize, damp, actOrder, 4, false);
  }

  /**
   * GPTQ onto asymmetric group grids of {@code bits} (2, 3, 4 or 8); otherwise as the INT4
   * overload.
   */
  public static QuantizedWeight quantize(
      float[] weight,
      int rows,
      int cols,
      double[] hessian,
      int groupSize,
      double damp,
      boolean actOrder,
      int bits) {
    return quantize(weight, rows, cols, hessian, groupSize, damp, actOrder, bits, false);
  }

  /**
   * As {@link #quantize(float[], int, int, double[], int, double, boolean)}, on the symmetric INT4
   * grid (no zero points, compressed-tensors' W4A16 preset) when {@code symmetric}.
   */
  public static QuantizedWeight quantize(
      float[] weight,
      int rows,
      int cols,
      double[] hessian,
      int groupSize,
      double damp,
      boolean actOrder,
      boolean symmetric) {
    return quantize(weight, rows, cols, hessian, groupSize, damp, actOrder, 4, symmetric);
  }

  /**
   * GPTQ onto group grids of {@code bits} (2, 3, 4 or 8), symmetric (no zero points) or asymmetric,
   * from a float64 Hessian (e.g. the calibrator's), which is left as it is: its float32 copy is
   * solved.
   */
  public static QuantizedWeight quantize(
      float[] weight,
      int rows,
      int cols,
      double[] hessian,
      int groupSize,
      double damp,
      boolean actOrder,
      int bits,
      boolean symmetric) {
    return quantizeConsuming(
        weight,
        rows,
        cols,
        HessianInverse.narrowed(hessian),
        groupSize,
        damp,
        actOrder,
        bits,
        symmetric);
  }

  /**
   * As {@link #quantize(float[], int, int, double[], int, double, boolean, int, boolean)}, taking
   * over a float32 Hessian: {@code hessian} is overwritten (the caller must not use it afterwards),
   * so that no second n x n array is made.
   */
  public static QuantizedWeight quantizeConsuming(
      float[] weight,
      int rows,
      int cols,
      float[] hessian,
      int groupSize,
      double damp,
      boolean actOrder,
      int bits,
      boolean symmetric) {
    GroupQuantizer.checkBits(bits);
    if (groupSize <= 0 || cols % groupSize != 0) {
      throw new IllegalArgumentException(
          "groupSize " + groupSize + " does not divide in_features " + cols);
    }
    if (hessian.length != (long) cols * cols) {
      throw new IllegalArgumentException("Hessian must be " + cols + "x" + cols);
    }
    float[] original = weight.clone();
    float[] diag = new float[cols];
    for (int j = 0; j < cols; j++) {
      diag[j] = hessian[j * cols + j];
      if (diag[j] == 0) { // a dead input channel: its weights never matter
        diag[j] = 1;
        for (int r = 0; r < rows; r++) {
          original[r * cols + j] = 0;
        }
      }
    }
    int[] perm = order(diag, actOrder);
    // the one n x n working array: H (permuted only with act-order), then U in place
    // (HessianInverse)
    float[] u;
    if (actOrder) {
      u = new float[cols * cols];
      for (int a = 0; a < cols; a++) {
        int from = perm[a] * cols;
        for (int b = 0; b < cols; b++) {
          u[a * cols + b] = hessian[from + perm[b]];
        }
      }
    } else {
      u = hessian;
    }
    for (int a = 0; a < cols; a++) {
      u[a * cols + a] = diag[perm[a]];
    }
    HessianInverse.upperCholeskyOfInverseInPlace(u, cols, damp);
    float[] w = new float[rows * cols];
    for (int r = 0; r < rows; r++) {
      for (int k = 0; k < cols; k++) {
        w[r * cols + k] = original[r * cols + perm[k]];
      }
    }
    int groups = cols / groupSize;
    GroupQuantizer.Grid[] grids = new GroupQuantizer.Grid[rows * groups];
    if (actOrder) {
      for (int r = 0; r < rows; r++) {
        for (int g = 0; g < groups; g++) {
          int from = r * cols + g * groupSize;
          grids[r * groups + g] =
              GroupQuantizer.Grid.of(original, from, from + groupSize, bits, symmetric);
        }
      }
    }
    // a group's grid is fixed at its first column, so every group must start a block (all earlier
    // errors applied)
    int block =
        groupSize % BLOCK == 0
            ? BLOCK
            : groupSize < BLOCK ? groupSize * (BLOCK / groupSize) : groupSize;
    int[] codes = new int[rows * cols];
    // inside a block, columns go in inner blocks of INNER: the Java loop feeds each column's error
    // only to its inner
    // block; an inner block's errors reach the rest of the block as one native product, the block's
    // the rest of W
    int inner =
        block % INNER == 0 && (groupSize % INNER == 0 || INNER % groupSize == 0) ? INNER : block;
    for (int b0 = 0; b0 < cols; b0 += block) {
      int b1 = Math.min(b0 + block, cols);
      float[] err = new float[rows * (b1 - b0)];
      for (int s0 = b0; s0 < b1; s0 += inner) {
        int from = s0;
        int to = Math.min(s0 + inner, b1);
        float[] innerErr = new float[rows * (to - from)];
        // rows are independent given U (every update stays within its row), so rows run in parallel
        IntStream.range(0, rows)
            .parallel()
            .forEach(
                r ->
                    quantizeBlock(
                        r, from, to, w, u, cols, groupSize, perm, grids, actOrder, bits, symmetric,
                        codes, innerErr));
        TrailingUpdate.subtractProduct(w, rows, cols, innerErr, from, to, u, b1);
        for (int r = 0; r < rows; r++) {
          System.arraycopy(innerErr, r * (to - from), err, r * (b1 - b0) + from - b0, to - from);
        }
      }
      // lazy batch update of the columns after the block (Section 3, "Lazy Batch-Updates")
      TrailingUpdate.subtractProduct(w, rows, cols, err, b0, b1, u);
    }
    float[] scales = new float[rows * groups];
    int[] zeros = new int[rows * groups];
    for (int i = 0; i < grids.length; i++) {
      scales[i] = grids[i].scale();
      zeros[i] = grids[i].zero();
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

  /**
   * Columns [b0, b1) of row r, each column's error fed to the later columns of the block at once.
   */
  private static void quantizeBlock(
      int r,
      int b0,
      int b1,
      float[] w,
      float[] u,
      int cols,
      int groupSize,
      int[] perm,
      GroupQuantizer.Grid[] grids,
      boolean actOrder,
      int bits,
      boolean symmetric,
      int[] codes,
      float[] err) {
    int groups = cols / groupSize;
    int row = r * cols;
    int width = b1 - b0;
    float[] slice = actOrder ? null : new float[groupSize];
    for (int k = b0; k < b1; k++) {
      int c = perm[k];
      if (!actOrder && k % groupSize == 0) {
        System.arraycopy(w, row + k, slice, 0, groupSize);
        grids[r * groups + k / groupSize] =
            GroupQuantizer.Grid.of(slice, 0, groupSize, bits, symmetric);
      }
      GroupQuantizer.Grid grid = grids[r * groups + c / groupSize];
      float x = w[row + k];
      int q = grid.quantize(x);
      codes[row + c] = q;
      float e = (x - grid.dequantize(q)) / u[k * cols + k];
      err[r * width + k - b0] = e;
      int urow = k * cols;
      for (int j = k + 1; j < b1; j++) {
        w[row + j] -= e * u[urow + j];
      }
    }
  }

  /** Column order: identity, or with act-order by decreasing diag(H). */
  private static int[] order(float[] diag, boolean actOrder) {
    int n = diag.length;
    Integer[] idx = new Integer[n];
    for (int i = 0; i < n; i++) {
      idx[i] = i;
    }
    if (actOrder) {
      Arrays.sort(idx, (a, b) -> Float.compare(diag[b], diag[a]));
    }
    int[] out = new int[n];
    for (int i = 0; i < n; i++) {
      out[i] = idx[i];
    }
    return out;
  }
}
