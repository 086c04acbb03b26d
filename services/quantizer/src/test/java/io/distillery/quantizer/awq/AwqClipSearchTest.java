package io.distillery.quantizer.awq;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.assertj.core.api.Assertions.within;

import io.distillery.model.quant.GroupQuantizer;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

class AwqClipSearchTest {

  /** X^T X of {@code tokens} random inputs of width n (channel j scaled by scale[j]). */
  static double[] gram(int tokens, int n, double[] scale, long seed) {
    SplittableRandom random = new SplittableRandom(seed);
    double[] g = new double[n * n];
    double[] x = new double[n];
    for (int t = 0; t < tokens; t++) {
      for (int j = 0; j < n; j++) {
        x[j] = random.nextGaussian() * scale[j];
      }
      for (int a = 0; a < n; a++) {
        for (int b = 0; b < n; b++) {
          g[a * n + b] += x[a] * x[b];
        }
      }
    }
    return g;
  }

  /**
   * sum over rows and groups of (w - Q(w')) G_gg (w - Q(w'))^T with w' the clamped weight and G_gg
   * the group's block of G (each group's partial output, as the search scores it), computed here by
   * hand.
   */
  static double outputError(
      float[] original, float[] clamped, int rows, int n, int group, double[] g) {
    float[] q = GroupQuantizer.int4FakeQuantize(clamped, rows, n, group);
    double total = 0;
    for (int r = 0; r < rows; r++) {
      for (int a = 0; a < n; a++) {
        for (int b = a / group * group; b < (a / group + 1) * group; b++) {
          total +=
              (original[r * n + a] - q[r * n + a])
                  * g[a * n + b]
                  * (original[r * n + b] - q[r * n + b]);
        }
      }
    }
    return total;
  }

  @Test
  void shouldClipAnOutlierWeightOnAQuietChannelAndLowerTheOutputError() {
    int rows = 8;
    int n = 32;
    SplittableRandom random = new SplittableRandom(3);
    float[] w = new float[rows * n];
    for (int i = 0; i < w.length; i++) {
      w[i] = (float) (random.nextGaussian() * 0.05);
    }
    for (int r = 0; r < rows; r++) {
      w[r * n + 5] = 1.0f; // one large weight per row, on a channel whose input is almost always ~0
    }
    double[] scale = new double[n];
    java.util.Arrays.fill(scale, 1.0);
    scale[5] = 0.01;
    double[] g = gram(200, n, scale, 4);
    float[] original = w.clone();

    AwqClipSearch.Result r = AwqClipSearch.clip(w, rows, n, 16, g, null, 10, 0.5);

    assertThat(r.clippedError())
        .isLessThan(0.5 * r.rtnError()); // the grid step shrinks for the 15 live weights
    assertThat(r.meanRatio()).isLessThan(1.0);
    assertThat(w[5]).isLessThan(1.0f); // the outlier was clamped
    // the reported errors are the objective itself: RTN of the original, Q(clamp) of the result
    assertThat(r.rtnError())
        .isCloseTo(outputError(original, original, rows, n, 16, g), within(1e-6 * r.rtnError()));
    assertThat(r.clippedError())
        .isCloseTo(outputError(original, w, rows, n, 16, g), within(1e-6 * r.rtnError()));
  }

  @Test
  void shouldKeepEveryWeightWhenNoClipLowersTheError() {
    int rows = 4;
    int n = 16;
    float[] w = new float[rows * n];
    for (int i = 0; i < w.length; i++) {
      w[i] =
          (i % 16)
              - 8f; // -8..7 lie on RTN's grid at ratio 1 (scale 1, zero 0): any clip adds error
    }
    double[] scale = new double[n];
    java.util.Arrays.fill(scale, 1.0);
    float[] original = w.clone();
    AwqClipSearch.Result r =
        AwqClipSearch.clip(w, rows, n, 16, gram(50, n, scale, 9), null, 10, 0.5);
    assertThat(w).isEqualTo(original);
    assertThat(r.clippedError()).isEqualTo(r.rtnError());
    assertThat(r.meanRatio()).isEqualTo(1.0);
  }

  @Test
  void shouldScoreInTheInputBasisLeftByTheScaleSearch() {
    double[] gram = {4, 2, 2, 9};
    float[] s = {2, 3};
    assertThat(AwqClipSearch.groupGram(gram, 2, 0, 2, s))
        .containsExactly(1.0, 2.0 / 6, 2.0 / 6, 1.0);
    assertThat(AwqClipSearch.groupGram(gram, 2, 1, 1, null)).containsExactly(9.0);
  }

  @Test
  void shouldRefuseShapesThatDoNotMatch() {
    assertThatThrownBy(
            () -> AwqClipSearch.clip(new float[12], 3, 4, 3, new double[16], null, 10, 0.5))
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessageContaining("group 3");
  }
}
