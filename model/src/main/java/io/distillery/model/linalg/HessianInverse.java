package io.distillery.model.linalg;

/**
 * The linear algebra GPTQ (arXiv 2210.17323, section 4 "Cholesky reformulation") and SparseGPT (arXiv 2301.00774)
 * share: dampen the Hessian, invert it through Cholesky, and return the upper Cholesky factor U of H^-1 (so that
 * H^-1 = U^T U). Row i of U, divided by U_ii, is the error propagation row of column i. Dense, row-major, double.
 */
public final class HessianInverse {

  private HessianInverse() {}

  /**
   * @param h {@code n x n} symmetric positive semi-definite (e.g. 2 X^T X / tokens), row-major; not modified
   * @param dampFraction added to the diagonal as a fraction of its mean (GPTQ uses 0.01)
   * @return U, upper triangular, with H_damped^-1 = U^T U
   * @throws IllegalArgumentException if H is not positive definite even after dampening
   */
  public static double[] upperCholeskyOfInverse(double[] h, int n, double dampFraction) {
    double[] a = dampened(h, n, dampFraction);
    double[] l = cholesky(a, n); // A = L L^T
    double[] inv = inverseFromCholesky(l, n); // A^-1
    double[] l2 = cholesky(inv, n); // A^-1 = L2 L2^T
    double[] u = new double[n * n];
    for (int i = 0; i < n; i++) {
      for (int j = i; j < n; j++) {
        u[i * n + j] = l2[j * n + i]; // U = L2^T, so A^-1 = U^T U
      }
    }
    return u;
  }

  /** H + damp * mean(diag H) * I; a zero diagonal entry (a dead input channel) becomes 1, as in GPTQ. */
  public static double[] dampened(double[] h, int n, double dampFraction) {
    if (h.length != (long) n * n) {
      throw new IllegalArgumentException("Hessian has " + h.length + " entries, expected " + n + "x" + n);
    }
    double[] a = h.clone();
    double mean = 0;
    for (int i = 0; i < n; i++) {
      mean += a[i * n + i];
    }
    mean /= n;
    double damp = dampFraction * (mean > 0 ? mean : 1);
    for (int i = 0; i < n; i++) {
      if (a[i * n + i] == 0) {
        a[i * n + i] = 1;
      }
      a[i * n + i] += damp;
    }
    return a;
  }

  /** Lower-triangular L with A = L L^T. */
  public static double[] cholesky(double[] a, int n) {
    double[] l = new double[n * n];
    for (int j = 0; j < n; j++) {
      double d = a[j * n + j];
      for (int k = 0; k < j; k++) {
        d -= l[j * n + k] * l[j * n + k];
      }
      if (!(d > 0)) {
        throw new IllegalArgumentException("matrix is not positive definite at column " + j + " (pivot " + d
            + "); increase the dampening");
      }
      double ljj = Math.sqrt(d);
      l[j * n + j] = ljj;
      for (int i = j + 1; i < n; i++) {
        double s = a[i * n + j];
        for (int k = 0; k < j; k++) {
          s -= l[i * n + k] * l[j * n + k];
        }
        l[i * n + j] = s / ljj;
      }
    }
    return l;
  }

  /** A^-1 from A = L L^T: solve L Y = I, then L^T X = Y. */
  public static double[] inverseFromCholesky(double[] l, int n) {
    double[] inv = new double[n * n];
    double[] y = new double[n];
    for (int c = 0; c < n; c++) {
      for (int i = 0; i < n; i++) {
        double s = i == c ? 1 : 0;
        for (int k = 0; k < i; k++) {
          s -= l[i * n + k] * y[k];
        }
        y[i] = s / l[i * n + i];
      }
      for (int i = n - 1; i >= 0; i--) {
        double s = y[i];
        for (int k = i + 1; k < n; k++) {
          s -= l[k * n + i] * inv[k * n + c];
        }
        inv[i * n + c] = s / l[i * n + i];
      }
    }
    return inv;
  }
}
