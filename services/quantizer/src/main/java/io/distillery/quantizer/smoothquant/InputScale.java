package io.distillery.quantizer.smoothquant;

import io.distillery.model.calib.EntropyCalibration;
import io.distillery.model.calib.LayerStats;
import java.util.Arrays;
import java.util.Locale;

/**
 * How W8A8's static per-tensor input scale is chosen: from the abs-max of the (smoothed) input,
 * from the entropy (KL) clip of its |x| histogram (TensorRT's calibration, {@link
 * EntropyCalibration}), or whichever of the two has the lower expected output error on the
 * calibration statistics ({@link #AUTO}, the default; abs-max when the calibration has no usable
 * histogram).
 *
 * <p>The calibrator collects one |x| histogram per layer input, pooled over channels, before
 * smoothing. Unsmoothed (s = null) that histogram is used as is. Smoothed, the histogram of |x_j /
 * s_j| is estimated from it: channel j is taken to follow the pooled distribution rescaled to its
 * own mean |x| (and cut at its own max |x|), divided by s_j. This is an estimate: the exact
 * histogram would need a second calibration pass through the smoothed model.
 *
 * <p>The expected output error of a scale is sum_j ||W'_:,j||^2 E[(x_j - q(x_j))^2] over the same
 * per-channel model (W' the smoothed weight, q the INT8 round trip: values below half a step round
 * to 0, values past 127 steps clip, the rest carry step^2 / 12), i.e. the output MSE if channel
 * errors are independent.
 */
public enum InputScale {
  ABSMAX,
  ENTROPY,
  AUTO;

  private static final int QMAX = 127;

  /**
   * @throws IllegalArgumentException naming the accepted values
   */
  public static InputScale of(String id) {
    for (InputScale v : values()) {
      if (v.name().equalsIgnoreCase(id)) {
        return v;
      }
    }
    throw new IllegalArgumentException("inputScale: one of absmax, entropy, auto, got " + id);
  }

  public String id() {
    return name().toLowerCase(Locale.ROOT);
  }

  /** The chosen scale and the two candidates with their expected output errors. */
  public record Choice(
      float scale,
      float absMaxScale,
      float entropyScale,
      double absMaxError,
      double entropyError) {}

  /**
   * @param stats the layer input's calibration statistics (absMax, sumAbs, histogram)
   * @param s SmoothQuant's per-channel scales already folded into {@code weight}, or null
   * @param weight the {@code [rows, n]} weight that consumes the input, in the smoothed basis
   */
  public Choice choose(LayerStats stats, float[] s, float[] weight, int rows) {
    int n = stats.inFeatures();
    if (weight.length != (long) rows * n) {
      throw new IllegalArgumentException(
          stats.module() + ": weight has " + weight.length + " values, expected " + rows + "x" + n);
    }
    float absMaxScale = SmoothQuant.inputScale(stats.absMax(), s);
    if (this == ABSMAX || (this == AUTO && !hasHistogram(stats))) {
      return new Choice(absMaxScale, absMaxScale, Float.NaN, Double.NaN, Double.NaN);
    }
    Histogram h = smoothedHistogram(stats, s);
    float clip = EntropyCalibration.clip(h.counts(), h.max(), EntropyCalibration.INT8_LEVELS);
    float entropyScale = clip > 0 ? Math.min(clip / QMAX, absMaxScale) : absMaxScale;
    if (this == ENTROPY) {
      return new Choice(entropyScale, absMaxScale, entropyScale, Double.NaN, Double.NaN);
    }
    double[] colNormSq = new double[n];
    for (int r = 0; r < rows; r++) {
      for (int j = 0; j < n; j++) {
        double v = weight[r * n + j];
        colNormSq[j] += v * v;
      }
    }
    double eAbs = expectedOutputError(stats, s, colNormSq, absMaxScale);
    double eEnt = expectedOutputError(stats, s, colNormSq, entropyScale);
    return new Choice(
        eEnt < eAbs ? entropyScale : absMaxScale, absMaxScale, entropyScale, eAbs, eEnt);
  }

  /**
   * Whether the calibration collected a histogram entropy calibration can use (non-empty, at least
   * 128 bins).
   */
  public static boolean hasHistogram(LayerStats stats) {
    long[] h = stats.histogram();
    return h != null
        && h.length >= EntropyCalibration.INT8_LEVELS
        && Arrays.stream(h).anyMatch(c -> c > 0);
  }

  /** Counts of |x| in equal bins over [0, max]. */
  public record Histogram(long[] counts, float max) {}

  /**
   * The |x / s| histogram (same number of bins as the collected one): the collected one when {@code
   * s} is null, otherwise the per-channel estimate described in the class comment.
   */
  public static Histogram smoothedHistogram(LayerStats stats, float[] s) {
    long[] pooled = stats.histogram();
    if (!hasHistogram(stats)) {
      throw new IllegalArgumentException(
          stats.module()
              + ": the calibration has no |x| histogram of at least "
              + EntropyCalibration.INT8_LEVELS
              + " bins for entropy input scales");
    }
    if (s == null) {
      return new Histogram(pooled.clone(), stats.histMax());
    }
    int bins = pooled.length;
    int n = stats.inFeatures();
    float max = 0;
    for (int j = 0; j < n; j++) {
      max = Math.max(max, stats.absMax()[j] / s[j]);
    }
    long[] out = new long[bins];
    if (max == 0) {
      return new Histogram(out, 1);
    }
    double pooledMean = pooledMean(stats);
    double binWidth = (double) stats.histMax() / bins;
    for (int j = 0; j < n; j++) {
      double ratio = channelRatio(stats, j, pooledMean);
      double cap = stats.absMax()[j] / s[j];
      for (int b = 0; b < bins; b++) {
        if (pooled[b] == 0) {
          continue;
        }
        double v = Math.min((b + 0.5) * binWidth * ratio, stats.absMax()[j]) / s[j];
        int bin = (int) Math.min(bins - 1, (long) (Math.min(v, cap) / max * bins));
        out[bin] += pooled[b];
      }
    }
    return new Histogram(out, max);
  }

  /**
   * sum_j ||W'_:,j||^2 E[(x_j/s_j - q(x_j/s_j))^2] under the per-channel model, up to a constant
   * factor.
   */
  static double expectedOutputError(LayerStats stats, float[] s, double[] colNormSq, float scale) {
    long[] pooled = stats.histogram();
    int bins = pooled.length;
    int n = stats.inFeatures();
    double pooledMean = pooledMean(stats);
    double binWidth = (double) stats.histMax() / bins;
    double top = (double) QMAX * scale;
    double rounding = (double) scale * scale / 12;
    double total = 0;
    for (int j = 0; j < n; j++) {
      if (colNormSq[j] == 0) {
        continue;
      }
      double ratio = channelRatio(stats, j, pooledMean);
      double sj = s == null ? 1 : s[j];
      double e = 0;
      for (int b = 0; b < bins; b++) {
        if (pooled[b] == 0) {
          continue;
        }
        double v = Math.min((b + 0.5) * binWidth * ratio, stats.absMax()[j]) / sj;
        double err = v > top ? (v - top) * (v - top) : v < scale / 2.0 ? v * v : rounding;
        e += pooled[b] * err;
      }
      total += colNormSq[j] * e;
    }
    return total;
  }

  private static double pooledMean(LayerStats stats) {
    double sum = Arrays.stream(toDoubles(stats.sumAbs())).sum();
    return stats.tokens() == 0 ? 0 : sum / ((double) stats.tokens() * stats.inFeatures());
  }

  /** Channel j's mean |x| over the pooled mean |x| (1 when there is nothing to compare). */
  private static double channelRatio(LayerStats stats, int j, double pooledMean) {
    if (pooledMean == 0 || stats.tokens() == 0) {
      return 1;
    }
    return stats.sumAbs()[j] / (double) stats.tokens() / pooledMean;
  }

  private static double[] toDoubles(float[] v) {
    double[] out = new double[v.length];
    for (int i = 0; i < v.length; i++) {
      out[i] = v[i];
    }
    return out;
  }
}
