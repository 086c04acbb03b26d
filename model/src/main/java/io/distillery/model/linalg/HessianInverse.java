package io.distillery.model.linalg;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.index.NDIndex;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;

/**
 * The linear algebra GPTQ (arXiv 2210.17323, section 4 "Cholesky reformulation") and SparseGPT
 * (arXiv 2301.00774) share: dampen the Hessian, invert it through Cholesky, and return the upper
 * Cholesky factor U of H^-1 (so that H^-1 = U^T U). Row i of U, divided by U_ii, is the error
 * propagation row of column i. Dense, row-major, double.
 *
 * <p>U is computed without forming H^-1: with P the order-reversing permutation and P H P = L L^T,
 * U = P L^-1 P (then U^T U = P L^-T L^-1 P = P (P H P)^-1 P = H^-1, and U is upper triangular with
 * a positive diagonal, so it is the Cholesky factor). L^-1 comes from a recursive blocked "inverse
 * Cholesky" whose work is float64 matrix products on DJL's native engine (multi-threaded BLAS);
 * only diagonal blocks of at most {@value #BASE} columns are factored in Java. The scalar path of
 * the original implementation, {@link #upperCholeskyOfInverseScalar}, is kept as the reference the
 * tests and {@code bench/linalg} compare against.
 */
public final class HessianInverse {

  /** Diagonal blocks up to this width are factored and inverted in Java. */
  static final int BASE = 128;

  private static final String ENGINE = "PyTorch";

  private HessianInverse() {}

  /**
   * @param h {@code n x n} symmetric positive semi-definite (e.g. 2 X^T X / tokens), row-major; not
   *     modified
   * @param dampFraction added to the diagonal as a fraction of its mean (GPTQ uses 0.01)
   * @return U, upper triangular, with H_damped^-1 = U^T U
   * @throws IllegalArgumentException if H is not positive definite even after dampening
   */
  public static double[] upperCholeskyOfInverse(double[] h, int n, double dampFraction) {
    double[] a = dampened(h, n, dampFraction);
    double[] reversed = new double[a.length];
    for (int i = 0; i < n; i++) {
      for (int j = 0; j < n; j++) {
        reversed[i * n + j] = a[(n - 1 - i) * n + (n - 1 - j)];
      }
    }
    double[] x;
    try {
      x = inverseCholesky(reversed, n); // L^-1 with P A P = L L^T
    } catch (IllegalArgumentException e) {
      throw new IllegalArgumentException(
          "the dampened Hessian is not positive definite ("
              + e.getMessage()
              + ", counting columns from the last)",
          e);
    }
    double[] u = new double[a.length];
    for (int i = 0; i < n; i++) {
      for (int j = i; j < n; j++) {
        u[i * n + j] = x[(n - 1 - i) * n + (n - 1 - j)]; // U = P L^-1 P
      }
    }
    return u;
  }

  /**
   * The original scalar Java path (Cholesky, inverse, Cholesky again), single-threaded and O(n^3)
   * in Java: the reference for tests and benchmarks.
   */
  public static double[] upperCholeskyOfInverseScalar(double[] h, int n, double dampFraction) {
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

  /**
   * X = L^-1, lower triangular, where A = L L^T (only A's lower triangle is read). Recursively,
   * with A split at h columns: X11 = inv-chol(A11); L21 = A21 X11^T; X22 = inv-chol(A22 - L21
   * L21^T); X21 = -X22 L21 X11. All products are float64 on the native engine; blocks of at most
   * {@value #BASE} columns are done in Java.
   */
  public static double[] inverseCholesky(double[] a, int n) {
    if (a.length != (long) n * n) {
      throw new IllegalArgumentException(
          "matrix has " + a.length + " entries, expected " + n + "x" + n);
    }
    if (n <= BASE) {
      return inverseCholeskyBlock(a, n, 0);
    }
    try (NDManager manager = Engine.getEngine(ENGINE).newBaseManager()) {
      NDArray x = inverseCholesky(manager.create(a, new Shape(n, n)), 0);
      return x.toDoubleArray();
    }
  }

  private static NDArray inverseCholesky(NDArray a, int offset) {
    NDManager manager = a.getManager();
    int n = (int) a.getShape().get(0);
    if (n <= BASE) {
      return manager.create(inverseCholeskyBlock(a.toDoubleArray(), n, offset), new Shape(n, n));
    }
    int h =
        Math.max(BASE, (n / 2 + 63) / 64 * 64); // split on a multiple of 64 for the BLAS kernels
    if (h >= n) {
      h = n / 2;
    }
    // every intermediate is closed as soon as it is used: at n = 8192 each one is 134 MB of native
    // memory
    NDArray a11 = a.get(new NDIndex(":{}, :{}", h, h));
    NDArray x11 = inverseCholesky(a11, offset);
    a11.close();
    NDArray a21 = a.get(new NDIndex("{}:, :{}", h, h));
    NDArray x11t = x11.transpose();
    NDArray l21 = a21.matMul(x11t);
    x11t.close();
    a21.close();
    NDArray l21t = l21.transpose();
    NDArray gram = l21.matMul(l21t);
    l21t.close();
    NDArray a22 = a.get(new NDIndex("{}:, {}:", h, h));
    NDArray s = a22.sub(gram);
    a22.close();
    gram.close();
    NDArray x22 = inverseCholesky(s, offset + h);
    s.close();
    NDArray l21x11 = l21.matMul(x11);
    l21.close();
    NDArray x21 = x22.matMul(l21x11).negi();
    l21x11.close();
    NDArray zeros = manager.zeros(new Shape(h, n - h), DataType.FLOAT64);
    NDArray top = x11.concat(zeros, 1);
    zeros.close();
    x11.close();
    NDArray bottom = x21.concat(x22, 1);
    x21.close();
    x22.close();
    NDArray x = top.concat(bottom, 0);
    top.close();
    bottom.close();
    return x;
  }

  /** Java kernel for a diagonal block: Cholesky, then forward substitution for L^-1. */
  private static double[] inverseCholeskyBlock(double[] a, int n, int offset) {
    double[] l = cholesky(a, n, offset);
    double[] x = new double[n * n];
    for (int c = 0; c < n; c++) {
      x[c * n + c] = 1 / l[c * n + c];
      for (int i = c + 1; i < n; i++) {
        double s = 0;
        for (int k = c; k < i; k++) {
          s -= l[i * n + k] * x[k * n + c];
        }
        x[i * n + c] = s / l[i * n + i];
      }
    }
    return x;
  }

  /**
   * H + damp * mean(diag H) * I; a zero diagonal entry (a dead input channel) becomes 1, as in
   * GPTQ.
   */
  public static double[] dampened(double[] h, int n, double dampFraction) {
    if (h.length != (long) n * n) {
      throw new IllegalArgumentException(
          "Hessian has " + h.length + " entries, expected " + n + "x" + n);
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
    return cholesky(a, n, 0);
  }

  /**
   * {@link #cholesky(double[], int)} of a diagonal block starting at column {@code offset} of a
   * larger matrix.
   */
  private static double[] cholesky(double[] a, int n, int offset) {
    double[] l = new double[n * n];
    for (int j = 0; j < n; j++) {
      double d = a[j * n + j];
      for (int k = 0; k < j; k++) {
        d -= l[j * n + k] * l[j * n + k];
      }
      if (!(d > 0)) {
        throw new IllegalArgumentException(
            "matrix is not positive definite at column "
                + (offset + j)
                + " (pivot "
                + d
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
