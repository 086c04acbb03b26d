package io.distillery.model.linalg;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.assertj.core.api.Assertions.within;

import java.util.Random;
import org.junit.jupiter.api.Test;

class HessianInverseTest {

  @Test
  void shouldFactorTheInverseWhenHessianIsPositiveDefinite() {
    // hand-checkable: H = [[4, 2], [2, 3]], H^-1 = [[3, -2], [-2, 4]] / 8
    float[] u = HessianInverse.upperCholeskyOfInverse(new float[] {4, 2, 2, 3}, 2, 0);
    double[][] inv = {{0.375, -0.25}, {-0.25, 0.5}};
    for (int i = 0; i < 2; i++) {
      for (int j = 0; j < 2; j++) {
        double s = 0;
        for (int k = 0; k < 2; k++) {
          s += (double) u[k * 2 + i] * u[k * 2 + j]; // (U^T U)_ij
        }
        assertThat(s).isCloseTo(inv[i][j], within(1e-6));
      }
    }
    assertThat(u[2]).isZero(); // upper triangular
  }

  @Test
  void shouldInvertARandomGramMatrix() {
    int n = 12;
    Random r = new Random(7);
    double[] x = new double[40 * n];
    for (int i = 0; i < x.length; i++) {
      x[i] = r.nextGaussian();
    }
    double[] h = new double[n * n];
    for (int t = 0; t < 40; t++) {
      for (int i = 0; i < n; i++) {
        for (int j = 0; j < n; j++) {
          h[i * n + j] += 2 * x[t * n + i] * x[t * n + j] / 40;
        }
      }
    }
    double[] a = HessianInverse.dampened(h, n, 0.01);
    double[] inv = HessianInverse.inverseFromCholesky(HessianInverse.cholesky(a, n), n);
    for (int i = 0; i < n; i++) {
      for (int j = 0; j < n; j++) {
        double s = 0;
        for (int k = 0; k < n; k++) {
          s += a[i * n + k] * inv[k * n + j];
        }
        assertThat(s).isCloseTo(i == j ? 1 : 0, within(1e-9));
      }
    }
  }

  @Test
  void shouldTreatADeadChannelAndRefuseAnIndefiniteMatrix() {
    double[] a = HessianInverse.dampened(new double[] {2, 0, 0, 0}, 2, 0.01);
    assertThat(a[3]).isEqualTo(1 + 0.01 * 1.0); // mean diag of the input = 1
    assertThatThrownBy(() -> HessianInverse.cholesky(new double[] {1, 2, 2, 1}, 2))
        .hasMessageContaining("not positive definite at column 1");
  }

  @Test
  void shouldMatchTheScalarPathOnARandom300x300Hessian() {
    int n = 300; // recurses: a 192-column block split again, and a 108-column block
    int tokens = 400;
    Random r = new Random(11);
    float[] x = new float[tokens * n];
    for (int i = 0; i < x.length; i++) {
      x[i] = (float) (r.nextGaussian() * (i % n % 17 == 0 ? 10 : 1));
    }
    double[] h = new double[n * n];
    for (int t = 0; t < tokens; t++) {
      for (int i = 0; i < n; i++) {
        for (int j = 0; j < n; j++) {
          h[i * n + j] += 2.0 * x[t * n + i] * x[t * n + j] / tokens;
        }
      }
    }
    double[] expected = HessianInverse.upperCholeskyOfInverseScalar(h, n, 0.01);
    float[] actual = HessianInverse.upperCholeskyOfInverse(HessianInverse.narrowed(h), n, 0.01);
    double diff = 0;
    double norm = 0;
    for (int i = 0; i < n * n; i++) {
      diff = Math.max(diff, Math.abs(actual[i] - expected[i]));
      norm = Math.max(norm, Math.abs(expected[i]));
    }
    // float32 against the float64 reference (the authors' code also solves in float32)
    assertThat(diff / norm).isLessThan(1e-4);
    for (int i = 1; i < n; i++) {
      assertThat(actual[i * n + i - 1]).isZero(); // upper triangular
    }
  }

  @Test
  void shouldGiveTheInverseCholeskyFactorOfAMatrixWiderThanOneBlock() {
    int n = 2 * HessianInverse.BASE + 7;
    Random r = new Random(3);
    double[] b = new double[n * n];
    for (int i = 0; i < b.length; i++) {
      b[i] = r.nextGaussian();
    }
    double[] a = new double[n * n]; // B B^T + n I
    for (int i = 0; i < n; i++) {
      for (int j = 0; j < n; j++) {
        double s = i == j ? n : 0;
        for (int k = 0; k < n; k++) {
          s += b[i * n + k] * b[j * n + k];
        }
        a[i * n + j] = s;
      }
    }
    float[] inv = HessianInverse.inverseCholesky(HessianInverse.narrowed(a), n);
    double[] l = HessianInverse.cholesky(a, n);
    for (int i = 0; i < n; i++) {
      for (int j = 0; j < n; j++) {
        double s = 0;
        for (int k = 0; k < n; k++) {
          s += inv[i * n + k] * l[k * n + j];
        }
        assertThat(s).isCloseTo(i == j ? 1 : 0, within(1e-5));
      }
    }
  }

  @Test
  void shouldRefuseAnIndefiniteMatrixWiderThanOneBlock() {
    int n = HessianInverse.BASE + 10;
    float[] h = new float[n * n];
    for (int i = 0; i < n; i++) {
      h[i * n + i] = 1;
    }
    h[0] = -1e6f; // damping by 1% of a hugely negative mean cannot fix it
    assertThatThrownBy(() -> HessianInverse.upperCholeskyOfInverse(h, n, 0.01))
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessageContaining("not positive definite");
  }

  @Test
  void shouldFactorInPlaceExactlyAsTheCopyingPathAndLeaveTheInputUntouchedThere() {
    int n = 2 * HessianInverse.BASE + 7;
    Random r = new Random(11);
    double[] x = new double[64 * n];
    for (int i = 0; i < x.length; i++) {
      x[i] = r.nextGaussian();
    }
    double[] h =
        new double[n * n]; // rank 64 < n: only the dampening makes it definite, as with few tokens
    for (int t = 0; t < 64; t++) {
      for (int i = 0; i < n; i++) {
        for (int j = 0; j < n; j++) {
          h[i * n + j] += 2.0 * x[t * n + i] * x[t * n + j] / 64;
        }
      }
    }
    float[] narrow = HessianInverse.narrowed(h);
    float[] original = narrow.clone();
    float[] copied = HessianInverse.upperCholeskyOfInverse(narrow, n, 0.01);
    assertThat(narrow).containsExactly(original);
    float[] work = narrow.clone();
    float[] inPlace = HessianInverse.upperCholeskyOfInverseInPlace(work, n, 0.01);
    assertThat(inPlace).isSameAs(work).containsExactly(copied);
    double[] expected = HessianInverse.upperCholeskyOfInverseScalar(h, n, 0.01);
    for (int i = 0; i < n; i++) {
      for (int j = 0; j < n; j++) {
        if (j < i) {
          assertThat(inPlace[i * n + j]).isZero();
        } else {
          assertThat((double) inPlace[i * n + j])
              .isCloseTo(expected[i * n + j], within(1e-4 * Math.abs(expected[i * n + i])));
        }
      }
    }
  }
}
