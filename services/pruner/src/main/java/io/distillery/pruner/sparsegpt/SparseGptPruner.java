package io.distillery.pruner.sparsegpt;

import io.distillery.model.calib.CalibrationStats;
import io.distillery.model.linalg.HessianInverse;
import io.distillery.model.linalg.TrailingUpdate;
import io.distillery.pruner.LinearPruner;
import io.distillery.pruner.PruneMask;
import io.distillery.pruner.SparsityPattern;
import java.util.Arrays;
import java.util.function.Function;
import java.util.stream.IntStream;

/**
 * SparseGPT (Frantar and Alistarh, arXiv 2301.00774, Algorithm 1): with the calibration Hessian H =
 * 2 X^T X / tokens (dampened) and U the upper Cholesky factor of H^-1 (H^-1 = U^T U, as in GPTQ),
 * walk the columns in order; in each block of {@code blockSize} columns choose the mask by the
 * smallest w_ij^2 / [U_jj]^2 (for N:M: the N smallest of every M columns, chosen when the walk
 * reaches the group), zero a pruned weight and propagate its error {@code err = w_ij / U_jj} to the
 * later columns of the row, {@code w_ik -= err * U_jk} (the optimal reconstruction update, eq. 3
 * restricted to the not-yet-processed columns).
 *
 * <p>Rows are independent given U: inside a block the rows run in parallel in Java, each pruned
 * weight's error applied at once to the later columns of the block; the errors of the whole block
 * reach the columns after it as one native matrix product {@code W[:, b2:] -= E U[b1:b2, b2:]} (the
 * lazy batch update of section 3.4, {@link TrailingUpdate}). Unstructured mask selection is per row
 * within a block ({@code round(sparsity * blockSize)} per row and block) so that every row reaches
 * the requested sparsity; the reference code thresholds the whole block instead.
 *
 * <p>The Hessians come from one calibration pass over the dense model; the paper's reference code
 * re-collects each layer's inputs after the preceding layers were pruned (sequential). With a
 * calibration artefact produced once by the calibrator stage, the one-shot statistics are what is
 * available; this is a known, usually small, difference.
 */
public final class SparseGptPruner implements LinearPruner {

  /** Columns per inner block (see {@code Gptq.INNER}). */
  static final int INNER = 32;

  private final SparsityPattern pattern;
  private final Function<String, float[]> hessians;
  private final double damp;
  private final int blockSize;

  /**
   * @param hessians module name to its {@code in x in} Hessian, row-major, float32 as in the
   *     authors' sparsegpt.py: a fresh array each call, which the pruner overwrites with the factor
   *     of its inverse (no second n x n array)
   */
  public SparseGptPruner(
      SparsityPattern pattern, Function<String, float[]> hessians, double damp, int blockSize) {
    this.pattern = pattern;
    this.hessians = hessians;
    this.damp = damp;
    this.blockSize = blockSize;
    if (pattern instanceof SparsityPattern.NOfM nm && blockSize % nm.m() != 0) {
      throw new IllegalArgumentException(
          "blockSize " + blockSize + " is not a multiple of " + nm.m());
    }
  }

  public static SparseGptPruner of(
      SparsityPattern pattern, CalibrationStats stats, double damp, int blockSize) {
    return new SparseGptPruner(
        pattern, module -> HessianInverse.narrowed(stats.layer(module).hessian()), damp, blockSize);
  }

  @Override
  public float[] prune(String module, float[] weight, int rows, int cols) {
    if (pattern instanceof SparsityPattern.NOfM nm) {
      nm.checkWidth(module, cols);
    }
    float[] u = HessianInverse.upperCholeskyOfInverseInPlace(hessians.apply(module), cols, damp);
    float[] w = weight.clone();
    boolean[] mask = new boolean[weight.length];
    // inner blocks as in GPTQ: the Java loop feeds each error only to its inner block, native
    // products do the rest
    int m = pattern instanceof SparsityPattern.NOfM nm ? nm.m() : 1;
    int inner = blockSize % INNER == 0 && INNER % m == 0 ? INNER : blockSize;
    for (int b1 = 0; b1 < cols; b1 += blockSize) {
      int from = b1;
      int b2 = Math.min(b1 + blockSize, cols);
      if (pattern instanceof SparsityPattern.Unstructured un) {
        // the block's mask is chosen when the walk reaches the block, from weights carrying every
        // earlier error
        IntStream.range(0, rows)
            .parallel()
            .forEach(
                r -> {
                  double[] score = new double[b2 - from];
                  scores(w, r * cols, u, cols, from, b2, score, 0);
                  boolean[] blockMask = new boolean[b2 - from];
                  PruneMask.lowest(score, 0, b2 - from, un.pruned(b2 - from), blockMask);
                  System.arraycopy(blockMask, 0, mask, r * cols + from, b2 - from);
                });
      }
      float[] err = new float[rows * (b2 - b1)];
      for (int s0 = b1; s0 < b2; s0 += inner) {
        int start = s0;
        int end = Math.min(s0 + inner, b2);
        float[] innerErr = new float[rows * (end - start)];
        IntStream.range(0, rows)
            .parallel()
            .forEach(r -> pruneBlock(r, start, end, w, cols, u, mask, innerErr));
        TrailingUpdate.subtractProduct(w, rows, cols, innerErr, start, end, u, b2);
        for (int r = 0; r < rows; r++) {
          System.arraycopy(
              innerErr, r * (end - start), err, r * (b2 - b1) + start - b1, end - start);
        }
      }
      TrailingUpdate.subtractProduct(w, rows, cols, err, b1, b2, u);
    }
    float[] out = new float[weight.length];
    for (int i = 0; i < out.length; i++) {
      out[i] = mask[i] ? 0f : w[i];
    }
    return out;
  }

  /**
   * Columns [s0, s1) of row r: choose N:M masks as the walk reaches each group, zero the pruned
   * weights (the unstructured mask is already set), and feed their errors to the rest of [s0, s1).
   */
  private void pruneBlock(
      int r, int s0, int s1, float[] w, int cols, float[] u, boolean[] mask, float[] err) {
    int row = r * cols;
    int width = s1 - s0;
    double[] score = pattern instanceof SparsityPattern.NOfM nm ? new double[nm.m()] : null;
    boolean[] groupMask = pattern instanceof SparsityPattern.NOfM nm ? new boolean[nm.m()] : null;
    for (int i = s0; i < s1; i++) {
      if (pattern instanceof SparsityPattern.NOfM nm && i % nm.m() == 0) {
        scores(w, row, u, cols, i, i + nm.m(), score, 0);
        Arrays.fill(groupMask, false);
        PruneMask.lowest(score, 0, nm.m(), nm.n(), groupMask);
        System.arraycopy(groupMask, 0, mask, row + i, nm.m());
      }
      if (!mask[row + i]) {
        continue;
      }
      float e = w[row + i] / u[i * cols + i];
      err[r * width + i - s0] = e;
      w[row + i] = 0;
      for (int k = i + 1; k < s1; k++) {
        w[row + k] -= e * u[i * cols + k];
      }
    }
  }

  /** w_j^2 / [U_jj]^2 for j in [from, to) of the row at {@code row}, into {@code score[at...]}. */
  private static void scores(
      float[] w, int row, float[] u, int cols, int from, int to, double[] score, int at) {
    for (int j = from; j < to; j++) {
      double d = u[j * cols + j];
      score[at + j - from] = (double) w[row + j] * w[row + j] / (d * d);
    }
  }
}
