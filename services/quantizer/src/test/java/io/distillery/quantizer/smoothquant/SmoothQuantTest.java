package io.distillery.quantizer.smoothquant;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.within;

import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

class SmoothQuantTest {

  static final int N = 8;

  /** y = W (g * x / rms(x)): RMSNorm followed by a linear layer. */
  static double[] normThenLinear(float[] g, float[] w, int rows, double[] x) {
    double ms = 0;
    for (double v : x) {
      ms += v * v;
    }
    double inv = 1 / Math.sqrt(ms / N + 1e-5);
    double[] y = new double[rows];
    for (int r = 0; r < rows; r++) {
      for (int j = 0; j < N; j++) {
        y[r] += w[r * N + j] * g[j] * x[j] * inv;
      }
    }
    return y;
  }

  @Test
  void shouldLeaveNormAndLinearOutputUnchangedWhenFoldingScales() {
    SplittableRandom random = new SplittableRandom(5);
    float[] g = new float[N];
    float[] q = new float[3 * N];
    float[] k = new float[2 * N];
    float[] absMax = new float[N];
    for (int j = 0; j < N; j++) {
      g[j] = (float) (1 + 0.1 * random.nextGaussian());
      absMax[j] = (float) (j == 3 ? 40 : 0.5 + random.nextDouble()); // one outlier channel
    }
    for (int i = 0; i < q.length; i++) {
      q[i] = (float) random.nextGaussian();
    }
    for (int i = 0; i < k.length; i++) {
      k[i] = (float) random.nextGaussian();
    }
    double[] x = new double[N];
    for (int j = 0; j < N; j++) {
      x[j] = random.nextGaussian() * absMax[j];
    }
    double[] yq = normThenLinear(g, q, 3, x);
    double[] yk = normThenLinear(g, k, 2, x);

    float[] s = SmoothQuant.scales(absMax, List.of(q, k), new int[] {3, 2}, N, 0.5);
    // s_3 = sqrt(40) / sqrt(max |W_:,3|): the outlier channel gets the largest scale
    double wMax3 = 0;
    for (int r = 0; r < 3; r++) {
      wMax3 = Math.max(wMax3, Math.abs(q[r * N + 3]));
    }
    for (int r = 0; r < 2; r++) {
      wMax3 = Math.max(wMax3, Math.abs(k[r * N + 3]));
    }
    assertThat((double) s[3]).isCloseTo(Math.sqrt(40) / Math.sqrt(wMax3), within(1e-4));
    SmoothQuant.fold(g, List.of(q, k), new int[] {3, 2}, N, s);

    double[] yq2 = normThenLinear(g, q, 3, x);
    double[] yk2 = normThenLinear(g, k, 2, x);
    for (int r = 0; r < 3; r++) {
      assertThat(yq2[r]).isCloseTo(yq[r], within(1e-4 * (1 + Math.abs(yq[r]))));
    }
    for (int r = 0; r < 2; r++) {
      assertThat(yk2[r]).isCloseTo(yk[r], within(1e-4 * (1 + Math.abs(yk[r]))));
    }
    // the smoothed activation range shrinks: max_j absMax_j / s_j < max_j absMax_j
    assertThat(SmoothQuant.inputScale(absMax, s)).isLessThan(SmoothQuant.inputScale(absMax, null));
  }
}
