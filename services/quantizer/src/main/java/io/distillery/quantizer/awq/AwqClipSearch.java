package io.distillery.quantizer.awq;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import io.distillery.model.quant.GroupQuantizer;

/**
 * AWQ's weight clipping (Lin et al., arXiv 2306.00978; {@code auto_clip} in the authors' code), run
 * after the scale search: for every output row and input group, the weights are clamped to {@code
 * +-ratio * max|w|} for ratio 1, 0.95, ... down to {@code 1 - maxShrink}, and the ratio that
 * minimises that row-group's output error on the calibration inputs, {@code || (w - Q(clamp(w))) X
 * ||^2 = e G e^T} with {@code G = X^T X} of the group's input channels (the group's partial output;
 * cross-group terms are left out, as in the authors' code), is kept. Ratio 1 is plain
 * round-to-nearest, so no row-group gets worse on this objective. The weight is clamped in place;
 * quantizing it afterwards gives Q(clamp(w)).
 */
public final class AwqClipSearch {

  private static final String ENGINE = "PyTorch";

  private AwqClipSearch() {}

  /** Output error summed over rows and groups, at ratio 1 everywhere (RTN) and after the search. */
  public record Result(double rtnError, double clippedError, double meanRatio) {}

  /**
   * @param w {@code [rows, cols]} row-major, clamped in place
   * @param gram X^T X of the layer's input ({@code cols x cols}), in the basis before {@code
   *     inputScale}
   * @param inputScale the AWQ scales already folded into {@code w}'s columns (the input is now x /
   *     s), or null
   * @param steps ratios tried: 1 - i * maxShrink / steps for i in [0, steps)
   */
  public static Result clip(
      float[] w,
      int rows,
      int cols,
      int groupSize,
      double[] gram,
      float[] inputScale,
      int steps,
      double maxShrink) {
    return clip(w, rows, cols, groupSize, gram, inputScale, steps, maxShrink, 4);
  }

  /**
   * The clip search for asymmetric group grids of {@code bits} (2, 3, 4 or 8); otherwise as the
   * INT4 overload.
   */
  public static Result clip(
      float[] w,
      int rows,
      int cols,
      int groupSize,
      double[] gram,
      float[] inputScale,
      int steps,
      double maxShrink,
      int bits) {
    GroupQuantizer.checkBits(bits);
    if (w.length != (long) rows * cols
        || gram.length != (long) cols * cols
        || cols % groupSize != 0) {
      throw new IllegalArgumentException(
          "clip: weight "
              + w.length
              + " for "
              + rows
              + "x"
              + cols
              + ", gram "
              + gram.length
              + ", group "
              + groupSize);
    }
    double rtn = 0;
    double best = 0;
    double ratioSum = 0;
    float[] block = new float[rows * groupSize];
    float[] trial = new float[groupSize];
    double[] error = new double[rows * groupSize];
    try (NDManager manager = Engine.getEngine(ENGINE).newBaseManager()) {
      for (int c0 = 0; c0 < cols; c0 += groupSize) {
        try (NDManager scope = manager.newSubManager()) {
          NDArray g =
              scope.create(
                  groupGram(gram, cols, c0, groupSize, inputScale),
                  new Shape(groupSize, groupSize));
          for (int r = 0; r < rows; r++) {
            System.arraycopy(w, r * cols + c0, block, r * groupSize, groupSize);
          }
          double[] bestError = new double[rows];
          double[] bestRatio = new double[rows];
          for (int i = 0; i < steps; i++) {
            double ratio = 1 - i * maxShrink / steps;
            for (int r = 0; r < rows; r++) {
              quantizeClamped(block, r * groupSize, groupSize, ratio, trial, bits);
              for (int k = 0; k < groupSize; k++) {
                error[r * groupSize + k] = block[r * groupSize + k] - trial[k];
              }
            }
            double[] perRow = rowErrors(scope, error, rows, groupSize, g);
            for (int r = 0; r < rows; r++) {
              if (i == 0) {
                rtn += perRow[r];
              }
              if (i == 0 || perRow[r] < bestError[r]) {
                bestError[r] = perRow[r];
                bestRatio[r] = ratio;
              }
            }
          }
          for (int r = 0; r < rows; r++) {
            best += bestError[r];
            ratioSum += bestRatio[r];
            clamp(w, r * cols + c0, groupSize, bestRatio[r]);
          }
        }
      }
    }
    return new Result(rtn, best, ratioSum / ((double) rows * (cols / groupSize)));
  }

  /** Q(clamp(w[from, from + n), +-ratio * max|w|)) into {@code out}. */
  static void quantizeClamped(float[] w, int from, int n, double ratio, float[] out, int bits) {
    float limit = (float) (ratio * maxAbs(w, from, n));
    for (int k = 0; k < n; k++) {
      out[k] = Math.max(-limit, Math.min(limit, w[from + k]));
    }
    GroupQuantizer.Grid grid = GroupQuantizer.Grid.asymmetric(out, 0, n, bits);
    for (int k = 0; k < n; k++) {
      out[k] = grid.fakeQuantize(out[k]);
    }
  }

  private static void clamp(float[] w, int from, int n, double ratio) {
    float limit = (float) (ratio * maxAbs(w, from, n));
    for (int k = from; k < from + n; k++) {
      w[k] = Math.max(-limit, Math.min(limit, w[k]));
    }
  }

  private static float maxAbs(float[] w, int from, int n) {
    float max = 0;
    for (int k = from; k < from + n; k++) {
      max = Math.max(max, Math.abs(w[k]));
    }
    return max;
  }

  /** The group's block of X^T X for the input x / s: G_ij / (s_i s_j). */
  static double[] groupGram(double[] gram, int cols, int c0, int n, float[] inputScale) {
    double[] out = new double[n * n];
    for (int i = 0; i < n; i++) {
      for (int j = 0; j < n; j++) {
        double v = gram[(c0 + i) * cols + c0 + j];
        out[i * n + j] =
            inputScale == null ? v : v / ((double) inputScale[c0 + i] * inputScale[c0 + j]);
      }
    }
    return out;
  }

  /** e G e^T per row of E ({@code rows x n}), in double on the engine. */
  private static double[] rowErrors(NDManager manager, double[] e, int rows, int n, NDArray gram) {
    try (NDManager scope = manager.newSubManager()) {
      NDArray err = scope.create(e, new Shape(rows, n));
      return err.matMul(gram).mul(err).sum(new int[] {1}).toDoubleArray();
    }
  }
}
