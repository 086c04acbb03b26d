package io.distillery.quantizer.awq;

import static org.assertj.core.api.Assertions.assertThat;

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
    AwqScaleSearch.Result result = AwqScaleSearch.search(List.of(w), new int[] {rows}, n, meanAbs, null, sumSq, 16,
        20);
    assertThat(result.bestLoss()).isLessThan(0.9 * result.rtnLoss());
    assertThat(result.ratio()).isGreaterThan(0);
    assertThat(result.scales()[0]).isGreaterThan(result.scales()[1]);
  }

  @Test
  void shouldNormaliseScalesBySqrtOfMaxTimesMinWhenComputingThem() {
    float[] s = AwqScaleSearch.scales(new float[] {4f, 1f}, 1.0);
    // s = [4, 1] / sqrt(4 * 1) = [2, 0.5]
    assertThat(s).containsExactly(2f, 0.5f);
  }
}
