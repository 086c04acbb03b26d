package io.distillery.quantizer.awq;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.within;

import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

class AwqScaleSearchTest {

  @Test
  void shouldBeatRtnOnOutputErrorWhenFewChannelsAreSalient() {
    int rows = 16;
    int n = 32;
    SplittableRandom random = new SplittableRandom(11);
    float[] w = new float[rows * n];
    for (int i = 0; i < w.length; i++) {
      w[i] = (float) (random.nextGaussian() * 0.1);
    }
    float[] meanAbs = new float[n];
    float[] sumSq = new float[n];
    for (int j = 0; j < n; j++) {
      meanAbs[j] = j % 8 == 0 ? 20f : 0.5f; // salient channels, as AWQ observes in LLM activations
      sumSq[j] = meanAbs[j] * meanAbs[j] * 100;
    }
    AwqScaleSearch.Result result =
        AwqScaleSearch.search(List.of(w), new int[] {rows}, n, meanAbs, null, sumSq, 16, 20);
    assertThat(result.bestLoss()).isLessThan(0.9 * result.rtnLoss());
    assertThat(result.ratio()).isGreaterThan(0);
    assertThat(result.scales()[0]).isGreaterThan(result.scales()[1]);
  }

  @Test
  void shouldBeatRtnAtEveryWidthAndLoseLessAsBitsGrow() {
    int rows = 16;
    int n = 32;
    SplittableRandom random = new SplittableRandom(11);
    float[] w = new float[rows * n];
    for (int i = 0; i < w.length; i++) {
      w[i] = (float) (random.nextGaussian() * 0.1);
    }
    float[] meanAbs = new float[n];
    float[] sumSq = new float[n];
    for (int j = 0; j < n; j++) {
      meanAbs[j] = j % 8 == 0 ? 20f : 0.5f;
      sumSq[j] = meanAbs[j] * meanAbs[j] * 100;
    }
    double previous = Double.POSITIVE_INFINITY;
    for (int bits : new int[] {2, 3, 4, 8}) {
      AwqScaleSearch.Result r =
          AwqScaleSearch.search(
              List.of(w), new int[] {rows}, n, meanAbs, null, sumSq, 16, 20, bits);
      assertThat(r.bestLoss())
          .as("%d bits", bits)
          .isLessThanOrEqualTo(r.rtnLoss())
          .isLessThan(previous / 2);
      previous = r.bestLoss();
    }
    assertThat(
            AwqScaleSearch.search(List.of(w), new int[] {rows}, n, meanAbs, null, sumSq, 16, 20, 4)
                .bestLoss())
        .isEqualTo(
            AwqScaleSearch.search(List.of(w), new int[] {rows}, n, meanAbs, null, sumSq, 16, 20)
                .bestLoss());
  }

  @Test
  void shouldEqualTheOutputErrorOfTheCalibrationInputsWhenGivenTheirGramMatrix() {
    int rows = 3;
    int n = 16;
    int tokens = 40;
    SplittableRandom random = new SplittableRandom(21);
    float[] w = new float[rows * n];
    for (int i = 0; i < w.length; i++) {
      w[i] = (float) random.nextGaussian();
    }
    double[] x = new double[tokens * n];
    for (int t = 0; t < tokens; t++) {
      double shared = random.nextGaussian(); // correlated channels: the Gram's off-diagonal matters
      for (int j = 0; j < n; j++) {
        x[t * n + j] = shared + 0.3 * random.nextGaussian();
      }
    }
    double[] gram = new double[n * n];
    for (int t = 0; t < tokens; t++) {
      for (int a = 0; a < n; a++) {
        for (int b = 0; b < n; b++) {
          gram[a * n + b] += x[t * n + a] * x[t * n + b];
        }
      }
    }
    float[] s =
        AwqScaleSearch.scales(new float[] {3, 1, 1, 2, 1, 1, 1, 1, 5, 1, 1, 1, 1, 1, 2, 1}, 0.5);
    double[] e = AwqScaleSearch.error(w, rows, n, s, 8, 4);
    // || E X^T ||_F^2 over the tokens, directly
    double direct = 0;
    for (int r = 0; r < rows; r++) {
      for (int t = 0; t < tokens; t++) {
        double y = 0;
        for (int j = 0; j < n; j++) {
          y += e[r * n + j] * x[t * n + j];
        }
        direct += y * y;
      }
    }
    assertThat(direct).isPositive();
    assertThat(AwqScaleSearch.loss(w, rows, n, s, gram, null, 8))
        .isCloseTo(direct, within(1e-9 * direct));
  }

  @Test
  void shouldNormaliseScalesBySqrtOfMaxTimesMinWhenComputingThem() {
    float[] s = AwqScaleSearch.scales(new float[] {4f, 1f}, 1.0);
    // s = [4, 1] / sqrt(4 * 1) = [2, 0.5]
    assertThat(s).containsExactly(2f, 0.5f);
  }
}
