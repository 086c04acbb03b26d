package io.distillery.pruner;

import java.util.Arrays;

/**
 * Chooses which weights to prune from per-weight importance scores (lowest first), for one pattern.
 * Shared by magnitude (score |W|) and Wanda (score |W| * ||X||_2); SparseGPT selects inside its
 * column loop with the same rules.
 */
public final class PruneMask {

  private PruneMask() {}

  /**
   * @param scores {@code rows x cols} row-major; lower = less important
   * @return {@code true} where the weight is pruned
   */
  public static boolean[] select(double[] scores, int rows, int cols, SparsityPattern pattern) {
    if (scores.length != (long) rows * cols) {
      throw new IllegalArgumentException(
          "scores have " + scores.length + " entries, expected " + rows + "x" + cols);
    }
    boolean[] mask = new boolean[scores.length];
    switch (pattern) {
      case SparsityPattern.Unstructured u -> {
        int k = u.pruned(cols);
        for (int r = 0; r < rows; r++) {
          lowest(scores, r * cols, cols, k, mask);
        }
      }
      case SparsityPattern.NOfM nm -> {
        if (cols % nm.m() != 0) {
          throw new IllegalArgumentException(
              "input width " + cols + " is not a multiple of " + nm.m());
        }
        for (int r = 0; r < rows; r++) {
          for (int g = 0; g < cols; g += nm.m()) {
            lowest(scores, r * cols + g, nm.m(), nm.n(), mask);
          }
        }
      }
    }
    return mask;
  }

  /**
   * Marks the {@code k} lowest of {@code scores[from, from+count)} (ties: the earlier index first).
   */
  public static void lowest(double[] scores, int from, int count, int k, boolean[] mask) {
    if (k <= 0) {
      return;
    }
    Integer[] order = new Integer[count];
    for (int i = 0; i < count; i++) {
      order[i] = i;
    }
    Arrays.sort(
        order,
        (a, b) -> {
          int c = Double.compare(scores[from + a], scores[from + b]);
          return c != 0 ? c : Integer.compare(a, b);
        });
    for (int i = 0; i < Math.min(k, count); i++) {
      mask[from + order[i]] = true;
    }
  }

  /** Zeroes the masked weights of a copy of {@code weight}. */
  public static float[] apply(float[] weight, boolean[] mask) {
    float[] out = weight.clone();
    for (int i = 0; i < out.length; i++) {
      if (mask[i]) {
        out[i] = 0f;
      }
    }
    return out;
  }
}
