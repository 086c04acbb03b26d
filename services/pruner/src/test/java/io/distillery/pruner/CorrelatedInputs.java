package io.distillery.pruner;

import java.util.SplittableRandom;

/** A random layer and correlated calibration inputs (x = z A + noise). */
public record CorrelatedInputs(float[] x, int tokens, int cols) {

  public static float[] randomWeight(int rows, int cols, long seed) {
    SplittableRandom random = new SplittableRandom(seed);
    float[] w = new float[rows * cols];
    for (int i = 0; i < w.length; i++) {
      w[i] = (float) random.nextGaussian();
    }
    return w;
  }

  /**
   * x = z A + noise with a few shared latent factors, so input channels are strongly correlated.
   */
  public static CorrelatedInputs correlated(int tokens, int cols, long seed) {
    SplittableRandom random = new SplittableRandom(seed);
    int latent = 4;
    double[] a = new double[latent * cols];
    for (int i = 0; i < a.length; i++) {
      a[i] = random.nextGaussian();
    }
    float[] x = new float[tokens * cols];
    for (int t = 0; t < tokens; t++) {
      double[] z = new double[latent];
      for (int k = 0; k < latent; k++) {
        z[k] = random.nextGaussian();
      }
      for (int j = 0; j < cols; j++) {
        double v = 0.1 * random.nextGaussian();
        for (int k = 0; k < latent; k++) {
          v += z[k] * a[k * cols + j];
        }
        x[t * cols + j] = (float) v;
      }
    }
    return new CorrelatedInputs(x, tokens, cols);
  }

  public float[] norms() {
    float[] n = new float[cols];
    for (int j = 0; j < cols; j++) {
      double s = 0;
      for (int t = 0; t < tokens; t++) {
        s += (double) x[t * cols + j] * x[t * cols + j];
      }
      n[j] = (float) Math.sqrt(s);
    }
    return n;
  }

  public double[] hessian() {
    double[] h = new double[cols * cols];
    for (int t = 0; t < tokens; t++) {
      for (int i = 0; i < cols; i++) {
        for (int j = 0; j < cols; j++) {
          h[i * cols + j] += 2.0 * x[t * cols + i] * x[t * cols + j] / tokens;
        }
      }
    }
    return h;
  }

  /** ||W X^T - W' X^T||_F. */
  public double outputError(float[] w, float[] pruned, int rows) {
    double e = 0;
    for (int r = 0; r < rows; r++) {
      for (int t = 0; t < tokens; t++) {
        double d = 0;
        for (int j = 0; j < cols; j++) {
          d += ((double) w[r * cols + j] - pruned[r * cols + j]) * x[t * cols + j];
        }
        e += d * d;
      }
    }
    return Math.sqrt(e);
  }
}
