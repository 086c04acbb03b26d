package io.distillery.quantizer.smoothquant;

import java.util.List;

/**
 * SmoothQuant's migration of activation outliers into the weights (Xiao et al., arXiv 2211.10438,
 * Section 4, eq. 4): s_j = max|X_j|^alpha / max|W_:,j|^(1 - alpha); Y = (X diag(s)^-1)(diag(s) W).
 * The 1/s is folded into the RMSNorm weight that produces X (so every consumer of that norm shares
 * s) and the weight columns are multiplied by s, which leaves the float product unchanged; then the
 * weights go to INT8 per channel and the smoothed activations get a static per-tensor scale
 * max_j(max|X_j| / s_j) / 127.
 */
public final class SmoothQuant {

  private static final double FLOOR = 1e-5;

  private SmoothQuant() {}

  /**
   * @param actAbsMax max |x_j| per input channel from calibration
   * @param weights the {@code [rows_i, n]} consumers of the same normalised input
   */
  public static float[] scales(
      float[] actAbsMax, List<float[]> weights, int[] rows, int n, double alpha) {
    double[] wMax = new double[n];
    for (int i = 0; i < weights.size(); i++) {
      float[] w = weights.get(i);
      for (int r = 0; r < rows[i]; r++) {
        for (int j = 0; j < n; j++) {
          wMax[j] = Math.max(wMax[j], Math.abs(w[r * n + j]));
        }
      }
    }
    float[] s = new float[n];
    for (int j = 0; j < n; j++) {
      double a = Math.max(actAbsMax[j], FLOOR);
      double b = Math.max(wMax[j], FLOOR);
      s[j] = (float) Math.max(Math.pow(a, alpha) / Math.pow(b, 1 - alpha), FLOOR);
    }
    return s;
  }

  /** norm_j /= s_j; W[:, j] *= s_j for every consumer (in place). */
  public static void fold(float[] normWeight, List<float[]> weights, int[] rows, int n, float[] s) {
    for (int j = 0; j < n; j++) {
      normWeight[j] /= s[j];
    }
    for (int i = 0; i < weights.size(); i++) {
      float[] w = weights.get(i);
      for (int r = 0; r < rows[i]; r++) {
        for (int j = 0; j < n; j++) {
          w[r * n + j] *= s[j];
        }
      }
    }
  }

  /**
   * Static symmetric INT8 per-tensor scale of activations with channel maxima {@code absMax / s} (s
   * may be null).
   */
  public static float inputScale(float[] actAbsMax, float[] s) {
    double max = 0;
    for (int j = 0; j < actAbsMax.length; j++) {
      max = Math.max(max, actAbsMax[j] / (s == null ? 1 : s[j]));
    }
    return (float) (max == 0 ? 1 : max / 127);
  }
}
