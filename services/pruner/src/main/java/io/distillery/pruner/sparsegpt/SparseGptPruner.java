package io.distillery.pruner.sparsegpt;

import io.distillery.model.calib.CalibrationStats;
import io.distillery.model.linalg.HessianInverse;
import io.distillery.model.linalg.TrailingUpdate;
import io.distillery.pruner.LinearPruner;
import io.distillery.pruner.PruneMask;
import io.distillery.pruner.SparsityPattern;
import java.util.function.Function;
import java.util.stream.IntStream;

/**
 * SparseGPT (Frantar and Alistarh, arXiv 2301.00774, Algorithm 1): with the calibration Hessian H = 2 X^T X / tokens
 * (dampened) and U the upper Cholesky factor of H^-1 (H^-1 = U^T U, as in GPTQ), walk the columns in order; in each
 * block of {@code blockSize} columns choose the mask by the smallest w_ij^2 / [U_jj]^2 (for N:M: the N smallest of
 * every M columns, chosen when the walk reaches the group), zero a pruned weight and propagate its error
 * {@code err = w_ij / U_jj} to the later columns of the row, {@code w_ik -= err * U_jk} (the optimal reconstruction
 * update, eq. 3 restricted to the not-yet-processed columns).
 *
 * <p>Rows are independent given U: inside a block the rows run in parallel in Java, each pruned weight's error applied
 * at once to the later columns of the block; the errors of the whole block reach the columns after it as one native
 * matrix product {@code W[:, b2:] -= E U[b1:b2, b2:]} (the lazy batch update of section 3.4, {@link TrailingUpdate}).
 * Unstructured mask
 * selection is per row within a block ({@code round(sparsity * blockSize)} per row and block) so that every row reaches
 * the requested sparsity; the reference code thresholds the whole block instead.
 *
 * <p>The Hessians come from one calibration pass over the dense model; the paper's reference code re-collects each
 * layer's inputs after the preceding layers were pruned (sequential). With a calibration artefact produced once by the
 * calibrator stage, the one-shot statistics are what is available; this is a known, usually small, difference.
 */
public final class SparseGptPruner implements LinearPruner {

  private final SparsityPattern pattern;
  private final Function<String, double[]> hessians;
  private final double damp;
  private final int blockSize;

  /** @param hessians module name to its {@code in x in} Hessian, row-major */
  public SparseGptPruner(SparsityPattern pattern, Function<String, double[]> hessians, double damp, int blockSize) {
    this.pattern = pattern;
    this.hessians = hessians;
    this.damp = damp;
    this.blockSize = blockSize;
    if (pattern instanceof SparsityPattern.NOfM nm && blockSize % nm.m() != 0) {
      throw new IllegalArgumentException("blockSize " + blockSize + " is not a multiple of " + nm.m());
    }
  }

  public static SparseGptPruner of(SparsityPattern pattern, CalibrationStats stats, double damp, int blockSize) {
    return new SparseGptPruner(pattern, module -> stats.layer(module).hessian(), damp, blockSize);
  }

  @Override
  public float[] prune(String module, float[] weight, int rows, int cols) {
    if (pattern instanceof SparsityPattern.NOfM nm) {
      nm.checkWidth(module, cols);
    }
    double[] h = hessians.apply(module);
    double[] u = HessianInverse.upperCholeskyOfInverse(h, cols, damp);
    double[] w = new double[weight.length];
    for (int i = 0; i < w.length; i++) {
      w[i] = weight[i];
    }
    boolean[] mask = new boolean[weight.length];
    for (int b1 = 0; b1 < cols; b1 += blockSize) {
      int from = b1;
      int b2 = Math.min(b1 + blockSize, cols);
      double[] err = new double[rows * (b2 - b1)];
      IntStream.range(0, rows).parallel().forEach(r -> pruneBlock(r, from, b2, w, cols, u, mask, err));
      TrailingUpdate.subtractProduct(w, rows, cols, err, b1, b2, u);
    }
    float[] out = new float[weight.length];
    for (int i = 0; i < out.length; i++) {
      out[i] = mask[i] ? 0f : (float) w[i];
    }
    return out;
  }

  /** Columns [b1, b2) of row r: choose the mask, zero the pruned weights, feed their errors to the rest of the block. */
  private void pruneBlock(int r, int b1, int b2, double[] w, int cols, double[] u, boolean[] mask, double[] err) {
    int row = r * cols;
    int width = b2 - b1;
    double[] score = new double[width];
    boolean[] blockMask = new boolean[width];
    if (pattern instanceof SparsityPattern.Unstructured un) {
      scores(w, row, u, cols, b1, b2, score, 0);
      PruneMask.lowest(score, 0, width, un.pruned(width), blockMask);
    }
    for (int i = b1; i < b2; i++) {
      if (pattern instanceof SparsityPattern.NOfM nm && i % nm.m() == 0) {
        scores(w, row, u, cols, i, i + nm.m(), score, i - b1);
        PruneMask.lowest(score, i - b1, nm.m(), nm.n(), blockMask);
      }
      if (!blockMask[i - b1]) {
        continue;
      }
      mask[row + i] = true;
      double e = w[row + i] / u[i * cols + i];
      err[r * width + i - b1] = e;
      w[row + i] = 0;
      for (int k = i + 1; k < b2; k++) {
        w[row + k] -= e * u[i * cols + k];
      }
    }
  }

  /** w_j^2 / [U_jj]^2 for j in [from, to) of the row at {@code row}, into {@code score[at...]}. */
  private static void scores(double[] w, int row, double[] u, int cols, int from, int to, double[] score, int at) {
    for (int j = from; j < to; j++) {
      double d = u[j * cols + j];
      score[at + j - from] = w[row + j] * w[row + j] / (d * d);
    }
  }
}
