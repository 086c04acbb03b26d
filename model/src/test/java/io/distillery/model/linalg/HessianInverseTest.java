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
    double[] u = HessianInverse.upperCholeskyOfInverse(new double[] {4, 2, 2, 3}, 2, 0);
    double[][] inv = {{0.375, -0.25}, {-0.25, 0.5}};
    for (int i = 0; i < 2; i++) {
      for (int j = 0; j < 2; j++) {
        double s = 0;
        for (int k = 0; k < 2; k++) {
          s += u[k * 2 + i] * u[k * 2 + j]; // (U^T U)_ij
        }
        assertThat(s).isCloseTo(inv[i][j], within(1e-12));
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
}
