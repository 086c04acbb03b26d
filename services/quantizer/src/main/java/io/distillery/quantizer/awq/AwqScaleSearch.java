package io.distillery.quantizer.awq;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import io.distillery.model.quant.GroupQuantizer;
import java.util.List;

/**
 * AWQ's per-input-channel scale search (Lin et al., arXiv 2306.00978, Section 3.2, eq. 4-5): s =
 * xbar^r with xbar the mean |x| of each input channel, normalised by sqrt(max s * min s); for r on
 * a grid over [0, 1) pick the r that minimises the output error of the layers sharing that input,
 * || (W - Q(W diag(s)) diag(s)^-1) X ||_F^2. With the calibration Gram matrix G = X^T X that error
 * is sum_rows e G e^T = sum((E G) .* E) (E the weight error), one GEMM per grid point on the
 * engine, so no activations are stored; without a Gram matrix, its diagonal (sum x^2 per channel)
 * is used. r = 0 is plain round-to-nearest, so the search never does worse than RTN on this
 * objective.
 */
public final class AwqScaleSearch {

  private static final String ENGINE = "PyTorch";

  private AwqScaleSearch() {}

  /** The chosen scales and the objective at r = 0 (RTN) and at the chosen r. */
  public record Result(float[] scales, double ratio, double rtnLoss, double bestLoss) {}

  /**
   * @param weights the {@code [rows_i, n]} weights that consume the same input (e.g. q, k, v)
   * @param rows rows of each weight
   * @param meanAbs mean |x| per input channel
   * @param gram X^T X ({@code n x n}) or null
   * @param sumSq sum x^2 per channel (the diagonal), used when {@code gram} is null
   */
  public static Result search(
      List<float[]> weights,
      int[] rows,
      int n,
      float[] meanAbs,
      double[] gram,
      float[] sumSq,
      int groupSize,
      int gridPoints) {
    return search(weights, rows, n, meanAbs, gram, sumSq, groupSize, gridPoints, 4);
  }

  /**
   * The search for asymmetric group grids of {@code bits} (2, 3, 4 or 8); otherwise as the INT4
   * overload.
   */
  public static Result search(
      List<float[]> weights,
      int[] rows,
      int n,
      float[] meanAbs,
      double[] gram,
      float[] sumSq,
      int groupSize,
      int gridPoints,
      int bits) {
    GroupQuantizer.checkBits(bits);
    float[] best = null;
    double bestLoss = Double.POSITIVE_INFINITY;
    double bestRatio = 0;
    double rtnLoss = Double.NaN;
    try (NDManager manager = gram == null ? null : Engine.getEngine(ENGINE).newBaseManager()) {
      NDArray g = gram == null ? null : manager.create(gram, new Shape(n, n));
      for (int step = 0; step < gridPoints; step++) {
        double ratio = (double) step / gridPoints;
        float[] s = scales(meanAbs, ratio);
        double loss = 0;
        for (int i = 0; i < weights.size(); i++) {
          float[] w = weights.get(i);
          double[] e = error(w, rows[i], n, s, groupSize, bits);
          loss +=
              g == null ? diagonalLoss(e, rows[i], n, sumSq) : gramLoss(manager, e, rows[i], n, g);
        }
        if (step == 0) {
          rtnLoss = loss;
        }
        if (loss < bestLoss) {
          bestLoss = loss;
          best = s;
          bestRatio = ratio;
        }
      }
    }
    return new Result(best, bestRatio, rtnLoss, bestLoss);
  }

  /** s_j = max(xbar_j, 1e-4)^r / sqrt(max s * min s). */
  public static float[] scales(float[] meanAbs, double ratio) {
    int n = meanAbs.length;
    double[] s = new double[n];
    double max = 0;
    double min = Double.POSITIVE_INFINITY;
    for (int j = 0; j < n; j++) {
      s[j] = Math.max(Math.pow(Math.max(meanAbs[j], 1e-8), ratio), 1e-4);
      max = Math.max(max, s[j]);
      min = Math.min(min, s[j]);
    }
    double norm = Math.sqrt(max * min);
    float[] out = new float[n];
    for (int j = 0; j < n; j++) {
      out[j] = (float) (s[j] / norm);
    }
    return out;
  }

  /**
   * || (W - Q(W diag s) diag(s)^-1) X ||_F^2 through the Gram matrix (null: its diagonal {@code
   * sumSq}).
   */
  public static double loss(
      float[] w, int rows, int n, float[] s, double[] gram, float[] sumSq, int groupSize) {
    return loss(w, rows, n, s, gram, sumSq, groupSize, 4);
  }

  /**
   * {@link #loss(float[], int, int, float[], double[], float[], int)} for {@code bits}-wide group
   * grids.
   */
  public static double loss(
      float[] w,
      int rows,
      int n,
      float[] s,
      double[] gram,
      float[] sumSq,
      int groupSize,
      int bits) {
    double[] e = error(w, rows, n, s, groupSize, bits);
    if (gram == null) {
      return diagonalLoss(e, rows, n, sumSq);
    }
    try (NDManager manager = Engine.getEngine(ENGINE).newBaseManager()) {
      return gramLoss(manager, e, rows, n, manager.create(gram, new Shape(n, n)));
    }
  }

  /** E = W - Q(W diag s) diag(s)^-1, {@code [rows, n]} row-major. */
  static double[] error(float[] w, int rows, int n, float[] s, int groupSize, int bits) {
    float[] scaled = new float[w.length];
    for (int r = 0; r < rows; r++) {
      for (int j = 0; j < n; j++) {
        scaled[r * n + j] = w[r * n + j] * s[j];
      }
    }
    float[] q = GroupQuantizer.fakeQuantize(scaled, rows, n, groupSize, bits);
    double[] e = new double[w.length];
    for (int r = 0; r < rows; r++) {
      for (int j = 0; j < n; j++) {
        e[r * n + j] = w[r * n + j] - q[r * n + j] / s[j];
      }
    }
    return e;
  }

  /** sum_rows e G e^T = sum((E G) .* E), in double on the engine. */
  private static double gramLoss(NDManager manager, double[] e, int rows, int n, NDArray gram) {
    try (NDManager scope = manager.newSubManager()) {
      NDArray err = scope.create(e, new Shape(rows, n));
      return err.matMul(gram).mul(err).sum().getDouble();
    }
  }

  private static double diagonalLoss(double[] e, int rows, int n, float[] sumSq) {
    double total = 0;
    for (int r = 0; r < rows; r++) {
      for (int j = 0; j < n; j++) {
        total += e[r * n + j] * e[r * n + j] * sumSq[j];
      }
    }
    return total;
  }
}
