package io.distillery.model.linalg;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.within;

import java.util.Random;
import org.junit.jupiter.api.Test;

class TrailingUpdateTest {

  @Test
  void shouldSubtractTheBlockProductFromTheLaterColumnsOnly() {
    // w = [[1, 2, 3, 4]], block [0, 2), err = [1, 2], u rows 0 and 1: w[:, 2:] -= [1, 2] . [[1, 1],
    // [10, 100]]
    double[] w = {1, 2, 3, 4};
    double[] u = new double[16];
    u[2] = 1;
    u[3] = 1;
    u[6] = 10;
    u[7] = 100;
    TrailingUpdate.subtractProduct(w, 1, 4, new double[] {1, 2}, 0, 2, u);
    assertThat(w).containsExactly(1, 2, 3 - 21, 4 - 201);
  }

  @Test
  void shouldAgreeWithTheScalarLoopWhenTheProductRunsNatively() {
    int rows = 300;
    int cols = 256;
    int b0 = 64;
    int b1 = 128;
    assertThat((long) rows * (b1 - b0) * (cols - b1))
        .isGreaterThanOrEqualTo(TrailingUpdate.NATIVE_MIN_MACS);
    Random r = new Random(5);
    double[] w = new double[rows * cols];
    double[] u = new double[cols * cols];
    double[] err = new double[rows * (b1 - b0)];
    for (int i = 0; i < w.length; i++) {
      w[i] = r.nextGaussian();
    }
    for (int i = 0; i < u.length; i++) {
      u[i] = i / cols <= i % cols ? r.nextGaussian() : 0;
    }
    for (int i = 0; i < err.length; i++) {
      err[i] = r.nextGaussian();
    }
    double[] expected = w.clone();
    for (int row = 0; row < rows; row++) {
      for (int k = b0; k < b1; k++) {
        for (int j = b1; j < cols; j++) {
          expected[row * cols + j] -= err[row * (b1 - b0) + k - b0] * u[k * cols + j];
        }
      }
    }
    TrailingUpdate.subtractProduct(w, rows, cols, err, b0, b1, u);
    for (int i = 0; i < w.length; i++) {
      assertThat(w[i]).isCloseTo(expected[i], within(1e-9));
    }
  }

  @Test
  void shouldAgreeWithTheScalarLoopWhenTheRowsGoInSeveralChunks() {
    int cols = 2060;
    int b0 = 4;
    int b1 = 12;
    int rows =
        TrailingUpdate.CHUNK_DOUBLES / (cols - b1) * 2
            + 3; // two full chunks and a remainder of 3 rows
    Random r = new Random(6);
    double[] w = new double[rows * cols];
    double[] u = new double[cols * cols];
    double[] err = new double[rows * (b1 - b0)];
    for (int i = 0; i < w.length; i++) {
      w[i] = r.nextGaussian();
    }
    for (int k = b0; k < b1; k++) {
      for (int j = k; j < cols; j++) {
        u[k * cols + j] = r.nextGaussian();
      }
    }
    for (int i = 0; i < err.length; i++) {
      err[i] = r.nextGaussian();
    }
    double[] expected = w.clone();
    for (int row = 0; row < rows; row++) {
      for (int k = b0; k < b1; k++) {
        for (int j = b1; j < cols; j++) {
          expected[row * cols + j] -= err[row * (b1 - b0) + k - b0] * u[k * cols + j];
        }
      }
    }
    TrailingUpdate.subtractProduct(w, rows, cols, err, b0, b1, u);
    for (int i = 0; i < w.length; i++) {
      assertThat(w[i]).isCloseTo(expected[i], within(1e-9));
    }
  }
}
