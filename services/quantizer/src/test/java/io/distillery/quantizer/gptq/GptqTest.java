package io.distillery.quantizer.gptq;

import static org.assertj.core.api.Assertions.assertThat;

import io.distillery.model.quant.GroupQuantizer;
import io.distillery.model.quant.QuantizedWeight;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

class GptqTest {

  static final int ROWS = 16;
  static final int COLS = 64;
  static final int TOKENS = 256;

  /** Correlated inputs: x = z A with a random mixing matrix, plus a few loud channels. */
  static double[] gram(long seed) {
    SplittableRandom random = new SplittableRandom(seed);
    double[] mix = new double[COLS * COLS];
    for (int i = 0; i < mix.length; i++) {
      mix[i] = random.nextGaussian() * 0.3 + (i / COLS == i % COLS ? 1 : 0);
    }
    double[] g = new double[COLS * COLS];
    double[] x = new double[COLS];
    for (int t = 0; t < TOKENS; t++) {
      double[] z = new double[COLS];
      for (int i = 0; i < COLS; i++) {
        z[i] = random.nextGaussian() * (i % 13 == 0 ? 5 : 1);
      }
      for (int j = 0; j < COLS; j++) {
        double v = 0;
        for (int i = 0; i < COLS; i++) {
          v += z[i] * mix[i * COLS + j];
        }
        x[j] = v;
      }
      for (int a = 0; a < COLS; a++) {
        for (int b = 0; b < COLS; b++) {
          g[a * COLS + b] += x[a] * x[b];
        }
      }
    }
    return g;
  }

  static float[] weight(long seed) {
    SplittableRandom random = new SplittableRandom(seed);
    float[] w = new float[ROWS * COLS];
    for (int i = 0; i < w.length; i++) {
      w[i] = (float) (random.nextGaussian() * 0.1);
    }
    return w;
  }

  /** ||(W - Q) X^T||_F^2 = sum over rows of e G e^T. */
  static double outputError(float[] w, float[] q, double[] g) {
    double total = 0;
    for (int r = 0; r < ROWS; r++) {
      for (int a = 0; a < COLS; a++) {
        double ea = w[r * COLS + a] - q[r * COLS + a];
        for (int b = 0; b < COLS; b++) {
          total += ea * g[a * COLS + b] * (w[r * COLS + b] - q[r * COLS + b]);
        }
      }
    }
    return total;
  }

  @Test
  void shouldReduceOutputErrorVersusRtnWhenInputsAreCorrelated() {
    double[] g = gram(1);
    double[] h = new double[g.length];
    for (int i = 0; i < g.length; i++) {
      h[i] = 2 * g[i] / TOKENS;
    }
    float[] w = weight(2);
    double rtn = outputError(w, GroupQuantizer.int4Group(w, ROWS, COLS, 16).dequantize(), g);
    double gptq = outputError(w, Gptq.quantize(w, ROWS, COLS, h, 16, 0.01, false).dequantize(), g);
    double gptqActOrder =
        outputError(w, Gptq.quantize(w, ROWS, COLS, h, 16, 0.01, true).dequantize(), g);
    assertThat(gptq).isLessThan(0.8 * rtn);
    assertThat(gptqActOrder).isLessThan(0.8 * rtn);
  }

  @Test
  void shouldEqualRtnWhenHessianIsDiagonalAndGroupsSpanOneBlock() {
    // with H = I there is no cross-column error to feed forward: GPTQ reduces to round-to-nearest
    double[] h = new double[COLS * COLS];
    for (int i = 0; i < COLS; i++) {
      h[i * COLS + i] = 1;
    }
    float[] w = weight(3);
    assertThat(Gptq.quantize(w, ROWS, COLS, h, 16, 0.01, false).codes())
        .containsExactly(GroupQuantizer.int4Group(w, ROWS, COLS, 16).codes());
  }

  @Test
  void shouldLowerTheOutputErrorAndKeepCodesInRangeWhenBitsGrow() {
    double[] g = gram(1);
    double[] h = new double[g.length];
    for (int i = 0; i < g.length; i++) {
      h[i] = 2 * g[i] / TOKENS;
    }
    float[] w = weight(2);
    double previous = Double.POSITIVE_INFINITY;
    for (int bits : new int[] {2, 3, 4, 8}) {
      QuantizedWeight q = Gptq.quantize(w, ROWS, COLS, h, 16, 0.01, false, bits);
      int lo = -(1 << (bits - 1));
      int hi = (1 << (bits - 1)) - 1;
      assertThat(q.bits()).isEqualTo(bits);
      assertThat(java.util.Arrays.stream(q.codes()).boxed().toList())
          .allSatisfy(c -> assertThat(c).isBetween(lo, hi));
      double error = outputError(w, q.dequantize(), g);
      assertThat(error).as("error at %d bits", bits).isLessThan(previous / 2);
      // and GPTQ still beats round-to-nearest at the same width
      assertThat(error)
          .isLessThan(
              outputError(w, GroupQuantizer.intGroup(w, ROWS, COLS, 16, bits).dequantize(), g));
      previous = error;
    }
    assertThat(Gptq.quantize(w, ROWS, COLS, h, 16, 0.01, false, 4).codes())
        .containsExactly(Gptq.quantize(w, ROWS, COLS, h, 16, 0.01, false).codes());
  }

  @Test
  void shouldMatchAnEagerGptqWhenTheMatrixSpansSeveralBlocksAndTheLazyUpdateRunsNatively() {
    int rows = 160;
    int cols =
        3 * Gptq.BLOCK; // three blocks: two lazy updates of 160 x 128 x (256, 128) multiply-adds
    int group = 32;
    SplittableRandom random = new SplittableRandom(8);
    double[] h = new double[cols * cols];
    double[] x = new double[cols];
    for (int t = 0; t < 2 * cols; t++) {
      double common = random.nextGaussian();
      for (int i = 0; i < cols; i++) {
        x[i] = random.nextGaussian() + common * (i % 3); // correlated channels
      }
      for (int a = 0; a < cols; a++) {
        for (int b = 0; b < cols; b++) {
          h[a * cols + b] += 2 * x[a] * x[b] / (2.0 * cols);
        }
      }
    }
    float[] w = new float[rows * cols];
    for (int i = 0; i < w.length; i++) {
      w[i] = (float) (random.nextGaussian() * 0.1);
    }
    int[] lazy = Gptq.quantize(w, rows, cols, h, group, 0.01, false, 3).codes();
    int[] eager = eagerGptq(w, rows, cols, h, group, 3);
    int same = 0;
    for (int i = 0; i < lazy.length; i++) {
      same += lazy[i] == eager[i] ? 1 : 0;
    }
    // the two differ only in the order of floating-point additions, which can flip a code sitting
    // on a rounding edge
    assertThat(same).isGreaterThanOrEqualTo(lazy.length - lazy.length / 1000);
  }

  /** Algorithm 1 without lazy batches: every column's error goes to every later column at once. */
  static int[] eagerGptq(float[] weight, int rows, int cols, double[] h, int group, int bits) {
    double[] u =
        io.distillery.model.linalg.HessianInverse.upperCholeskyOfInverseScalar(h, cols, 0.01);
    int[] codes = new int[rows * cols];
    for (int r = 0; r < rows; r++) {
      double[] w = new double[cols];
      for (int j = 0; j < cols; j++) {
        w[j] = weight[r * cols + j];
      }
      GroupQuantizer.Grid grid = null;
      for (int k = 0; k < cols; k++) {
        if (k % group == 0) {
          float[] slice = new float[group];
          for (int i = 0; i < group; i++) {
            slice[i] = (float) w[k + i];
          }
          grid = GroupQuantizer.Grid.asymmetric(slice, 0, group, bits);
        }
        float v = (float) w[k];
        int q = grid.quantize(v);
        codes[r * cols + k] = q;
        double e = (v - grid.dequantize(q)) / u[k * cols + k];
        for (int j = k + 1; j < cols; j++) {
          w[j] -= e * u[k * cols + j];
        }
      }
    }
    return codes;
  }
}
