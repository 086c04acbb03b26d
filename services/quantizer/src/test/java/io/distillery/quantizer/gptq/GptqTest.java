package io.distillery.quantizer.gptq;

import static org.assertj.core.api.Assertions.assertThat;

import io.distillery.model.quant.GroupQuantizer;
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
    double gptqActOrder = outputError(w, Gptq.quantize(w, ROWS, COLS, h, 16, 0.01, true).dequantize(), g);
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
}
