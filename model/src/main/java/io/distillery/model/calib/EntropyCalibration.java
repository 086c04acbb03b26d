package io.distillery.model.calib;

/**
 * Entropy (KL-divergence) range selection for a static activation scale, as TensorRT does it
 * (Migacz, "8-bit Inference with TensorRT", GTC 2017; the same procedure as MXNet's {@code
 * _get_optimal_threshold}). It exists because the abs-max of an activation is set by rare outliers:
 * clipping them loses less information than spreading 128 levels over a range the bulk of the
 * values never reaches.
 *
 * <p>For each candidate cut {@code i >= levels} of the |x| histogram:
 *
 * <ol>
 *   <li>P = bins[0, i) with the mass of bins[i, end) (what clipping at the edge of bin i folds into
 *       the top level) added to its last bin;
 *   <li>Q = bins[0, i) merged into {@code levels} groups of {@code i / levels} bins (the last group
 *       takes the rest), each group's count spread evenly over the group's non-zero bins of P, zero
 *       elsewhere;
 *   <li>both smoothed (a tiny mass moved to zero bins so KL stays finite) and normalised; KL(P ||
 *       Q) computed.
 * </ol>
 *
 * The cut with the smallest KL wins and the clip value is its upper bin edge, {@code i * histMax /
 * bins}.
 */
public final class EntropyCalibration {

  /** Positive levels of a symmetric INT8 grid. */
  public static final int INT8_LEVELS = 128;

  /** Mass moved onto empty bins before taking logarithms (MXNet's {@code _smooth_distribution}). */
  private static final double SMOOTHING = 1e-4;

  private EntropyCalibration() {}

  /** The clip value of a layer's |x| histogram for INT8 ({@value #INT8_LEVELS} levels). */
  public static float clip(LayerStats stats) {
    return clip(stats.histogram(), stats.histMax(), INT8_LEVELS);
  }

  /**
   * The clip value: the upper edge of the best cut's last bin, on a histogram of equal bins over
   * [0, histMax].
   *
   * @return histMax when the histogram is empty (nothing to learn from)
   */
  public static float clip(long[] histogram, float histMax, int levels) {
    int cut = bestCut(histogram, levels);
    return (float) ((double) cut * histMax / histogram.length);
  }

  /**
   * The number of leading bins to keep ({@code levels <= cut <= histogram.length}) that minimises
   * KL(P || Q).
   *
   * @throws IllegalArgumentException if there are fewer bins than levels, or a negative count
   */
  public static int bestCut(long[] histogram, int levels) {
    if (levels < 2 || histogram.length < levels) {
      throw new IllegalArgumentException(
          "entropy calibration needs at least "
              + levels
              + " histogram bins, got "
              + histogram.length);
    }
    long total = 0;
    for (long c : histogram) {
      if (c < 0) {
        throw new IllegalArgumentException("histogram has a negative count " + c);
      }
      total += c;
    }
    if (total == 0) {
      return histogram.length;
    }
    long[] suffix = new long[histogram.length + 1];
    for (int i = histogram.length - 1; i >= 0; i--) {
      suffix[i] = suffix[i + 1] + histogram[i];
    }
    int best = histogram.length;
    double bestKl = Double.POSITIVE_INFINITY;
    double[] p = new double[histogram.length];
    double[] q = new double[histogram.length];
    for (int i = levels; i <= histogram.length; i++) {
      double kl = divergence(histogram, suffix[i], i, levels, p, q);
      if (kl < bestKl) {
        bestKl = kl;
        best = i;
      }
    }
    return best;
  }

  /**
   * KL(P || Q) of the cut at {@code i} bins; {@code p} and {@code q} are scratch arrays of at least
   * i entries.
   */
  static double divergence(
      long[] histogram, long outliers, int i, int levels, double[] p, double[] q) {
    for (int j = 0; j < i; j++) {
      p[j] = histogram[j];
    }
    p[i - 1] += outliers;
    int merged = i / levels;
    for (int level = 0; level < levels; level++) {
      int start = level * merged;
      int stop = level == levels - 1 ? i : start + merged;
      double sum = 0;
      int nonZero = 0;
      for (int j = start; j < stop; j++) {
        sum += histogram[j];
        if (p[j] != 0) {
          nonZero++;
        }
      }
      double spread = nonZero == 0 ? 0 : sum / nonZero;
      for (int j = start; j < stop; j++) {
        q[j] = p[j] == 0 ? 0 : spread;
      }
    }
    if (!smooth(p, i) || !smooth(q, i)) {
      return Double.POSITIVE_INFINITY;
    }
    double sumP = 0;
    double sumQ = 0;
    for (int j = 0; j < i; j++) {
      sumP += p[j];
      sumQ += q[j];
    }
    double kl = 0;
    for (int j = 0; j < i; j++) {
      if (p[j] > 0) {
        double pj = p[j] / sumP;
        kl += pj * Math.log(pj / (q[j] / sumQ));
      }
    }
    return kl;
  }

  /**
   * Adds {@code eps} to zero bins and takes the same total from the non-zero ones; false if all are
   * zero.
   */
  private static boolean smooth(double[] d, int length) {
    int zeros = 0;
    for (int j = 0; j < length; j++) {
      if (d[j] == 0) {
        zeros++;
      }
    }
    int nonZeros = length - zeros;
    if (nonZeros == 0) {
      return false;
    }
    double take = SMOOTHING * zeros / nonZeros;
    for (int j = 0; j < length; j++) {
      d[j] = d[j] == 0 ? SMOOTHING : Math.max(d[j] - take, SMOOTHING);
    }
    return true;
  }
}
