package io.distillery.pruner.wanda;

import io.distillery.model.calib.CalibrationStats;
import io.distillery.pruner.LinearPruner;
import io.distillery.pruner.PruneMask;
import io.distillery.pruner.SparsityPattern;
import java.util.function.Function;

/**
 * Wanda (Sun et al., arXiv 2306.11695, eq. 1): score S_ij = |W_ij| * ||X_j||_2, where ||X_j||_2 is
 * the L2 norm of input channel j over the calibration tokens; prune the lowest per output row
 * (unstructured) or the lowest N of every M inputs (N:M). No weight update.
 */
public final class WandaPruner implements LinearPruner {

  private final SparsityPattern pattern;
  private final Function<String, float[]> inputNorms;

  /**
   * @param inputNorms module name to ||X_j||_2 per input channel
   */
  public WandaPruner(SparsityPattern pattern, Function<String, float[]> inputNorms) {
    this.pattern = pattern;
    this.inputNorms = inputNorms;
  }

  public static WandaPruner of(SparsityPattern pattern, CalibrationStats stats) {
    return new WandaPruner(pattern, module -> stats.layer(module).l2Norm());
  }

  @Override
  public float[] prune(String module, float[] weight, int rows, int cols) {
    float[] norm = inputNorms.apply(module);
    if (norm.length != cols) {
      throw new IllegalArgumentException(
          module + ": calibration has " + norm.length + " input channels, the weight " + cols);
    }
    return PruneMask.apply(
        weight, PruneMask.select(scores(weight, rows, cols, norm), rows, cols, pattern));
  }

  /** S_ij = |W_ij| * ||X_j||_2. */
  public static double[] scores(float[] weight, int rows, int cols, float[] norm) {
    double[] s = new double[weight.length];
    for (int r = 0; r < rows; r++) {
      for (int j = 0; j < cols; j++) {
        s[r * cols + j] = Math.abs(weight[r * cols + j]) * (double) norm[j];
      }
    }
    return s;
  }
}
