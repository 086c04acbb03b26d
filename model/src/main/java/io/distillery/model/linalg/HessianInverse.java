package io.distillery.model.linalg;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.index.NDIndex;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.FloatBuffer;
import java.util.Arrays;
import java.util.function.IntToDoubleFunction;

/**
 * The linear algebra GPTQ (arXiv 2210.17323, section 4 "Cholesky reformulation") and SparseGPT
 * (arXiv 2301.00774) share: dampen the Hessian, invert it through Cholesky, and return the upper
 * Cholesky factor U of H^-1 (so that H^-1 = U^T U). Row i of U, divided by U_ii, is the error
 * propagation row of column i. Dense, row-major, float32, as in the authors' code (gptq.py and
 * sparsegpt.py factor a float32 H with torch.linalg.cholesky): at the widths of real models the
 * matrix is the solve's memory (268 MB at n = 8192 and 822 MB at n = 14336, half of float64), and
 * float32 products run at about twice the float64 rate.
 *
 * <p>U is computed without forming H^-1: with P the order-reversing permutation and P H P = L L^T,
 * U = P L^-1 P (then U^T U = P L^-T L^-1 P = P (P H P)^-1 P = H^-1, and U is upper triangular with
 * a positive diagonal, so it is the Cholesky factor). On a row-major array, P A P is the array read
 * backwards, so both permutations are in-place reversals. L and then L^-1 overwrite the matrix in
 * place (LAPACK's blocked right-looking potrf, then a blocked trtri going from the last block
 * column back), {@value #BASE} columns at a time: diagonal blocks are factored in Java with float64
 * sums, and the panel and trailing products run as float32 matrix products on DJL's native engine
 * (multi-threaded BLAS) in row chunks of at most {@value #CHUNK_FLOATS} floats, so the working
 * memory beyond the matrix itself stays a few tens of MB at any width. The scalar float64 path of
 * the original implementation, {@link #upperCholeskyOfInverseScalar}, is kept as the reference the
 * tests and {@code bench/linalg} compare against.
 */
public final class HessianInverse {

  /** Block width: diagonal blocks up to this width are factored and inverted in Java. */
  static final int BASE = 128;

  /** Largest row chunk of a native product, in floats (16 MB). */
  static final int CHUNK_FLOATS = 1 << 22;

  private static final String ENGINE = "PyTorch";

  private HessianInverse() {}

  /**
   * @param h {@code n x n} symmetric positive semi-definite (e.g. 2 X^T X / tokens), row-major; not
   *     modified
   * @param dampFraction added to the diagonal as a fraction of its mean (GPTQ uses 0.01)
   * @return U, upper triangular, with H_damped^-1 = U^T U
   * @throws IllegalArgumentException if H is not positive definite even after dampening
   */
  public static float[] upperCholeskyOfInverse(float[] h, int n, double dampFraction) {
    checkSquare(h.length, n, "Hessian");
    return upperCholeskyOfInverseInPlace(h.clone(), n, dampFraction);
  }

  /**
   * {@link #upperCholeskyOfInverse} without a copy: dampens {@code a} and overwrites it with U (its
   * strict lower triangle becomes zero). The only n x n array alive is {@code a} itself.
   *
   * @return {@code a}
   */
  public static float[] upperCholeskyOfInverseInPlace(float[] a, int n, double dampFraction) {
    checkSquare(a.length, n, "Hessian");
    dampen(a, n, dampFraction);
    reverse(a); // P A P
    try {
      inverseCholeskyInPlace(a, n); // L^-1 with P A P = L L^T
    } catch (IllegalArgumentException e) {
      throw new IllegalArgumentException(
          "the dampened Hessian is not positive definite ("
              + e.getMessage()
              + ", counting columns from the last)",
          e);
    }
    reverse(a); // U = P L^-1 P
    return a;
  }

  /** {@code h} rounded to float32, the precision the solve runs in. */
  public static float[] narrowed(double[] h) {
    float[] f = new float[h.length];
    for (int i = 0; i < h.length; i++) {
      f[i] = (float) h[i];
    }
    return f;
  }

  /**
   * The original scalar Java path (Cholesky, inverse, Cholesky again), single-threaded, O(n^3) in
   * Java and in float64: the reference for tests and benchmarks.
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
   * X = L^-1, lower triangular, where A = L L^T (only A's lower triangle is read; A is not
   * modified).
   */
  public static float[] inverseCholesky(float[] a, int n) {
    checkSquare(a.length, n, "matrix");
    return inverseCholeskyInPlace(a.clone(), n);
  }

  /**
   * Overwrites {@code a} with L^-1 (strict upper triangle zeroed), A = L L^T; only A's lower
   * triangle is read.
   */
  private static float[] inverseCholeskyInPlace(float[] a, int n) {
    Staging stage = n > BASE ? new Staging(n) : null;
    try (NDManager manager = n > BASE ? Engine.getEngine(ENGINE).newBaseManager() : null) {
      choleskyInPlace(a, n, manager, stage);
      triangularInverseInPlace(a, n, manager, stage);
    }
    for (int i = 0; i < n; i++) {
      Arrays.fill(a, i * n + i + 1, (i + 1) * n, 0);
    }
    return a;
  }

  /**
   * Blocked right-looking Cholesky (LAPACK potrf): per block column k, factor A_kk = L_kk L_kk^T in
   * Java, the panel L_ik = A_ik L_kk^-T as one native product, then the trailing A_ij -= L_ik
   * L_jk^T in row chunks. Overwrites the lower triangle of {@code a} with L.
   */
  private static void choleskyInPlace(float[] a, int n, NDManager parent, Staging stage) {
    float[] row = new float[n];
    for (int k0 = 0; k0 < n; k0 += BASE) {
      int k1 = Math.min(k0 + BASE, n);
      int kb = k1 - k0;
      choleskyDiagonalBlock(a, n, k0, k1);
      int m = n - k1;
      if (m == 0) {
        break;
      }
      double[] lkkInvT = transpose(lowerInverse(a, n, k0, k1), kb);
      try (NDManager manager = parent.newSubManager()) {
        NDArray panel =
            stage
                .block(manager, 0, a, n, k1, n, k0, k1)
                .matMul(stage.array(manager, 1, lkkInvT, kb, kb));
        FloatBuffer l21 = view(panel);
        for (int i = 0; i < m; i++) {
          l21.get(i * kb, a, (k1 + i) * n + k0, kb);
        }
        NDArray panelT = panel.transpose();
        int chunk = rowChunk(n);
        for (int r0 = 0; r0 < m; r0 += chunk) {
          int r1 = Math.min(r0 + chunk, m);
          try (NDManager step = manager.newSubManager()) {
            // rows [r0, r1) of the trailing lower triangle need columns [0, r1) only
            NDArray product =
                panel
                    .get(new NDIndex("{}:{}", r0, r1))
                    .matMul(panelT.get(new NDIndex(":, :{}", r1)));
            product.attach(step);
            FloatBuffer d = view(product);
            for (int i = r0; i < r1; i++) {
              d.get((i - r0) * r1, row, 0, i + 1);
              int at = (k1 + i) * n + k1;
              for (int j = 0; j <= i; j++) {
                a[at + j] -= row[j];
              }
            }
          }
        }
      }
    }
  }

  /**
   * Blocked triangular inverse (LAPACK trtri, lower), in place, from the last block column back:
   * with X22 the already inverted trailing block, X21 = -X22 L21 X11 and X11 = L11^-1; X22 is read
   * in row chunks.
   */
  private static void triangularInverseInPlace(float[] a, int n, NDManager parent, Staging stage) {
    int last = (n - 1) / BASE * BASE;
    for (int k0 = last; k0 >= 0; k0 -= BASE) {
      int k1 = Math.min(k0 + BASE, n);
      int kb = k1 - k0;
      double[] x11 = lowerInverse(a, n, k0, k1);
      int m = n - k1;
      if (m > 0) {
        try (NDManager manager = parent.newSubManager()) {
          NDArray t =
              stage
                  .block(manager, 0, a, n, k1, n, k0, k1)
                  .matMul(stage.array(manager, 1, x11, kb, kb));
          int chunk = rowChunk(n);
          for (int r0 = 0; r0 < m; r0 += chunk) {
            int r1 = Math.min(r0 + chunk, m);
            try (NDManager step = manager.newSubManager()) {
              // rows [r0, r1) of X22, lower triangle only (its upper triangle still holds A)
              NDArray x22 = stage.lowerRows(step, a, n, k1, r0, r1);
              NDArray product = x22.matMul(t.get(new NDIndex(":{}, :", r1)));
              product.attach(step);
              FloatBuffer x21 = view(product);
              for (int i = r0; i < r1; i++) {
                int at = (k1 + i) * n + k0;
                x21.get((i - r0) * kb, a, at, kb);
                for (int j = 0; j < kb; j++) {
                  a[at + j] = -a[at + j];
                }
              }
            }
          }
        }
      }
      for (int i = 0; i < kb; i++) {
        for (int j = 0; j <= i; j++) {
          a[(k0 + i) * n + k0 + j] = (float) x11[i * kb + j];
        }
      }
    }
  }

  /**
   * A product's data without a copy (a direct view of the engine's memory while the array is open).
   */
  private static FloatBuffer view(NDArray x) {
    return x.toByteBuffer(true).order(ByteOrder.nativeOrder()).asFloatBuffer();
  }

  /**
   * One direct buffer through which Java floats reach the engine, reused for every product of a
   * solve, in three regions: 0, a panel ({@code n x BASE}); 1, a diagonal block ({@code BASE x
   * BASE}); 2, a row chunk. So a solve leaves no per-product garbage on the heap or in direct
   * buffers awaiting GC. A region is rewritten only after the arrays made from it are closed.
   */
  private static final class Staging {
    private final ByteBuffer bytes;
    private final FloatBuffer floats;
    private final int[] offsets;

    Staging(int n) {
      int panel = n * BASE;
      int chunk = rowChunk(n) * n;
      offsets = new int[] {0, panel, panel + BASE * BASE};
      bytes =
          ByteBuffer.allocateDirect((panel + BASE * BASE + chunk) * Float.BYTES)
              .order(ByteOrder.nativeOrder());
      floats = bytes.asFloatBuffer();
    }

    NDArray array(NDManager manager, int region, double[] data, int rows, int cols) {
      int at = offsets[region];
      for (int i = 0; i < rows * cols; i++) {
        floats.put(at + i, (float) data[i]);
      }
      return create(manager, region, rows, cols);
    }

    /** Rows [r0, r1) and columns [c0, c1) of the n x n matrix {@code a}. */
    NDArray block(NDManager manager, int region, float[] a, int n, int r0, int r1, int c0, int c1) {
      int w = c1 - c0;
      for (int r = r0; r < r1; r++) {
        floats.put(offsets[region] + (r - r0) * w, a, r * n + c0, w);
      }
      return create(manager, region, r1 - r0, w);
    }

    /**
     * Rows [r0, r1) of the lower triangle of the trailing block at {@code k1}, columns [0, r1),
     * zeros above.
     */
    NDArray lowerRows(NDManager manager, float[] a, int n, int k1, int r0, int r1) {
      int base = offsets[2];
      for (int i = r0; i < r1; i++) {
        int at = base + (i - r0) * r1;
        floats.put(at, a, (k1 + i) * n + k1, i + 1);
        for (int j = i + 1; j < r1; j++) {
          floats.put(at + j, 0);
        }
      }
      return create(manager, 2, r1 - r0, r1);
    }

    private NDArray create(NDManager manager, int region, int rows, int cols) {
      ByteBuffer slice =
          bytes
              .slice(offsets[region] * Float.BYTES, rows * cols * Float.BYTES)
              .order(ByteOrder.nativeOrder());
      return manager.create(slice, new Shape(rows, cols), DataType.FLOAT32);
    }
  }

  /**
   * Cholesky of the diagonal block [k0, k1) in place (its earlier columns' updates already
   * applied).
   */
  private static void choleskyDiagonalBlock(float[] a, int n, int k0, int k1) {
    for (int j = k0; j < k1; j++) {
      int rj = j * n;
      double d = a[rj + j];
      for (int k = k0; k < j; k++) {
        d -= a[rj + k] * a[rj + k];
      }
      if (!(d > 0)) {
        throw new IllegalArgumentException(
            "matrix is not positive definite at column "
                + j
                + " (pivot "
                + d
                + "); increase the dampening");
      }
      double ljj = Math.sqrt(d);
      a[rj + j] = (float) ljj;
      for (int i = j + 1; i < k1; i++) {
        int ri = i * n;
        double s = a[ri + j];
        for (int k = k0; k < j; k++) {
          s -= (double) a[ri + k] * a[rj + k];
        }
        a[ri + j] = (float) (s / ljj);
      }
    }
  }

  /**
   * The inverse of the lower-triangular diagonal block [k0, k1) of {@code a}, by forward
   * substitution.
   */
  private static double[] lowerInverse(float[] a, int n, int k0, int k1) {
    int b = k1 - k0;
    double[] x = new double[b * b];
    for (int c = 0; c < b; c++) {
      x[c * b + c] = 1 / a[(k0 + c) * n + k0 + c];
      for (int i = c + 1; i < b; i++) {
        int ri = (k0 + i) * n + k0;
        double s = 0;
        for (int k = c; k < i; k++) {
          s -= a[ri + k] * x[k * b + c];
        }
        x[i * b + c] = s / a[ri + i];
      }
    }
    return x;
  }

  private static double[] transpose(double[] x, int b) {
    double[] t = new double[b * b];
    for (int i = 0; i < b; i++) {
      for (int j = 0; j < b; j++) {
        t[j * b + i] = x[i * b + j];
      }
    }
    return t;
  }

  /**
   * Rows per native product so that one chunk of an n-wide matrix stays within {@link
   * #CHUNK_FLOATS}.
   */
  private static int rowChunk(int n) {
    return Math.max(BASE, CHUNK_FLOATS / n);
  }

  /**
   * Reverses a row-major square matrix in both indices (P A P) in place: the flat array read
   * backwards.
   */
  private static void reverse(float[] a) {
    for (int i = 0, j = a.length - 1; i < j; i++, j--) {
      float t = a[i];
      a[i] = a[j];
      a[j] = t;
    }
  }

  private static void checkSquare(int length, int n, String what) {
    if (length != (long) n * n) {
      throw new IllegalArgumentException(
          what + " has " + length + " entries, expected " + n + "x" + n);
    }
  }

  /**
   * H + damp * mean(diag H) * I; a zero diagonal entry (a dead input channel) becomes 1, as in
   * GPTQ.
   */
  public static double[] dampened(double[] h, int n, double dampFraction) {
    checkSquare(h.length, n, "Hessian");
    double[] a = h.clone();
    double damp = damping(i -> a[i * n + i], n, dampFraction);
    for (int i = 0; i < n; i++) {
      a[i * n + i] = (a[i * n + i] == 0 ? 1 : a[i * n + i]) + damp;
    }
    return a;
  }

  /** {@link #dampened} in place, on float32. */
  private static void dampen(float[] a, int n, double dampFraction) {
    double damp = damping(i -> a[i * n + i], n, dampFraction);
    for (int i = 0; i < n; i++) {
      a[i * n + i] = (float) ((a[i * n + i] == 0 ? 1 : a[i * n + i]) + damp);
    }
  }

  /** The value added to the diagonal: {@code dampFraction} of its mean (of 1 if not positive). */
  private static double damping(IntToDoubleFunction diagonal, int n, double dampFraction) {
    double mean = 0;
    for (int i = 0; i < n; i++) {
      mean += diagonal.applyAsDouble(i);
    }
    mean /= n;
    return dampFraction * (mean > 0 ? mean : 1);
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
        throw new IllegalArgumentException(
            "matrix is not positive definite at column "
                + j
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
