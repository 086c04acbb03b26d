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
    float[] w = {1, 2, 3, 4};
    float[] u = new float[16];
    u[2] = 1;
    u[3] = 1;
    u[6] = 10;
    u[7] = 100;
    TrailingUpdate.subtractProduct(w, 1, 4, new float[] {1, 2}, 0, 2, u);
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
    float[] w = new float[rows * cols];
    float[] u = new float[cols * cols];
    float[] err = new float[rows * (b1 - b0)];
    for (int i = 0; i < w.length; i++) {
      w[i] = (float) r.nextGaussian();
    }
    for (int i = 0; i < u.length; i++) {
      u[i] = i / cols <= i % cols ? (float) r.nextGaussian() : 0;
    }
    for (int i = 0; i < err.length; i++) {
      err[i] = (float) r.nextGaussian();
    }
    double[] expected = new double[w.length];
    for (int i = 0; i < w.length; i++) {
      expected[i] = w[i];
    }
    for (int row = 0; row < rows; row++) {
      for (int k = b0; k < b1; k++) {
        for (int j = b1; j < cols; j++) {
          expected[row * cols + j] -= (double) err[row * (b1 - b0) + k - b0] * u[k * cols + j];
        }
      }
    }
    TrailingUpdate.subtractProduct(w, rows, cols, err, b0, b1, u);
    for (int i = 0; i < w.length; i++) {
      // float32 products of 64 (or 8) terms of size ~1: rounding ~1e-5; a wrong index is O(1)
      assertThat((double) w[i]).isCloseTo(expected[i], within(2e-4));
    }
  }

  @Test
  void shouldAgreeWithTheScalarLoopWhenTheRowsGoInSeveralChunks() {
    int cols = 2060;
    int b0 = 4;
    int b1 = 12;
    int rows =
        TrailingUpdate.CHUNK_FLOATS / (cols - b1) * 2
            + 3; // two full chunks and a remainder of 3 rows
    Random r = new Random(6);
    float[] w = new float[rows * cols];
    float[] u = new float[cols * cols];
    float[] err = new float[rows * (b1 - b0)];
    for (int i = 0; i < w.length; i++) {
      w[i] = (float) r.nextGaussian();
    }
    for (int k = b0; k < b1; k++) {
      for (int j = k; j < cols; j++) {
        u[k * cols + j] = (float) r.nextGaussian();
      }
    }
    for (int i = 0; i < err.length; i++) {
      err[i] = (float) r.nextGaussian();
    }
    double[] expected = new double[w.length];
    for (int i = 0; i < w.length; i++) {
      expected[i] = w[i];
    }
    for (int row = 0; row < rows; row++) {
      for (int k = b0; k < b1; k++) {
        for (int j = b1; j < cols; j++) {
          expected[row * cols + j] -= (double) err[row * (b1 - b0) + k - b0] * u[k * cols + j];
        }
      }
    }
    TrailingUpdate.subtractProduct(w, rows, cols, err, b0, b1, u);
    for (int i = 0; i < w.length; i++) {
      // float32 products of 64 (or 8) terms of size ~1: rounding ~1e-5; a wrong index is O(1)
      assertThat((double) w[i]).isCloseTo(expected[i], within(2e-4));
    }
  }
}
