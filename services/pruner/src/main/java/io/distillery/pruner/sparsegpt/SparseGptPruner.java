package io.distillery.pruner.sparsegpt;

import io.distillery.model.calib.CalibrationStats;
import io.distillery.model.linalg.HessianInverse;
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
 * <p>Rows are independent given U, so each row is processed on its own, with the error applied eagerly to every later
 * column: this is arithmetically the lazy block update of the paper (section 3.4), done row by row. Unstructured mask
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
    float[] out = new float[weight.length];
    IntStream.range(0, rows).parallel().forEach(r -> pruneRow(weight, r, cols, u, out));
    return out;
  }

  private void pruneRow(float[] weight, int r, int cols, double[] u, float[] out) {
    double[] w = new double[cols];
    for (int j = 0; j < cols; j++) {
      w[j] = weight[r * cols + j];
    }
    boolean[] mask = new boolean[cols];
    double[] score = new double[cols];
    for (int b1 = 0; b1 < cols; b1 += blockSize) {
      int b2 = Math.min(b1 + blockSize, cols);
      if (pattern instanceof SparsityPattern.Unstructured un) {
        scores(w, u, cols, b1, b2, score);
        PruneMask.lowest(score, b1, b2 - b1, un.pruned(b2 - b1), mask);
      }
      for (int i = b1; i < b2; i++) {
        if (pattern instanceof SparsityPattern.NOfM nm && i % nm.m() == 0) {
          scores(w, u, cols, i, i + nm.m(), score);
          PruneMask.lowest(score, i, nm.m(), nm.n(), mask);
        }
        if (!mask[i]) {
          continue;
        }
        double err = w[i] / u[i * cols + i];
        w[i] = 0;
        for (int k = i + 1; k < cols; k++) {
          w[k] -= err * u[i * cols + k];
        }
      }
    }
    for (int j = 0; j < cols; j++) {
      out[r * cols + j] = mask[j] ? 0f : (float) w[j];
    }
  }

  /** w_j^2 / [U_jj]^2 for j in [from, to): the error of pruning w_j alone (eq. 3 with the diagonal of H^-1). */
  private static void scores(double[] w, double[] u, int cols, int from, int to, double[] score) {
    for (int j = from; j < to; j++) {
      double d = u[j * cols + j];
      score[j] = w[j] * w[j] / (d * d);
    }
  }
}
