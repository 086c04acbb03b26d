package io.distillery.pruner.magnitude;

import io.distillery.pruner.LinearPruner;
import io.distillery.pruner.PruneMask;
import io.distillery.pruner.SparsityPattern;

/**
 * The baseline: prune the smallest |W_ij| per output row (or per group of M inputs), no weight
 * update.
 */
public final class MagnitudePruner implements LinearPruner {

  private final SparsityPattern pattern;

  public MagnitudePruner(SparsityPattern pattern) {
    this.pattern = pattern;
  }

  @Override
  public float[] prune(String module, float[] weight, int rows, int cols) {
    double[] scores = new double[weight.length];
    for (int i = 0; i < weight.length; i++) {
      scores[i] = Math.abs(weight[i]);
    }
    return PruneMask.apply(weight, PruneMask.select(scores, rows, cols, pattern));
  }
}
