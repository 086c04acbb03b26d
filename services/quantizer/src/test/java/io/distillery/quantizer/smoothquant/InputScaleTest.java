package io.distillery.quantizer.smoothquant;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.assertj.core.api.Assertions.within;

import io.distillery.model.calib.EntropyCalibration;
import io.distillery.model.calib.LayerStats;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

class InputScaleTest {

  static final int N = 16;
  static final int TOKENS = 4000;
  static final int BINS = 2048;

  /**
   * Statistics of Laplace-tailed inputs (with one rare spike in channel 0), collected as the
   * calibrator does.
   */
  static LayerStats stats(boolean spike) {
    SplittableRandom random = new SplittableRandom(2);
    float[] x = new float[TOKENS * N];
    for (int i = 0; i < x.length; i++) {
      double e = -Math.log(1 - random.nextDouble()); // |Laplace|: long-tailed, where clipping pays
      x[i] = (float) (random.nextBoolean() ? e : -e);
    }
    if (spike) {
      x[0] = 400;
    }
    float[] absMax = new float[N];
    float[] sumAbs = new float[N];
    float[] sumSq = new float[N];
    float max = 0;
    for (int i = 0; i < x.length; i++) {
      int j = i % N;
      float a = Math.abs(x[i]);
      absMax[j] = Math.max(absMax[j], a);
      sumAbs[j] += a;
      sumSq[j] += a * a;
      max = Math.max(max, a);
    }
    float histMax = 2 * max;
    long[] hist = new long[BINS];
    for (float v : x) {
      hist[(int) Math.min(BINS - 1, (long) (Math.abs(v) / histMax * BINS))]++;
    }
    return new LayerStats("l", N, TOKENS, absMax, sumAbs, sumSq, null, hist, histMax);
  }

  static float[] ones(int rows) {
    float[] w = new float[rows * N];
    java.util.Arrays.fill(w, 1);
    return w;
  }

  @Test
  void shouldUseTheCollectedHistogramWhenUnsmoothed() {
    LayerStats st = stats(true);
    InputScale.Choice c = InputScale.ENTROPY.choose(st, null, ones(2), 2);
    assertThat(c.scale()).isEqualTo(EntropyCalibration.clip(st) / 127);
    assertThat(c.scale()).isLessThan(c.absMaxScale()); // the one 400 spike is clipped
    assertThat(InputScale.ABSMAX.choose(st, null, ones(2), 2).scale())
        .isCloseTo(400f / 127, within(1e-4f));
  }

  @Test
  void shouldPickEntropyWhenARareSpikeSetsTheAbsMax() {
    // abs-max spends 127 levels on [0, 400] for one value; the bulk lies below 10
    InputScale.Choice c = InputScale.AUTO.choose(stats(true), null, ones(2), 2);
    assertThat(c.entropyError()).isLessThan(c.absMaxError());
    assertThat(c.scale()).isEqualTo(c.entropyScale());
  }

  @Test
  void shouldPickTheLowerExpectedErrorOfTheTwo() {
    for (boolean spike : new boolean[] {true, false}) {
      InputScale.Choice c = InputScale.AUTO.choose(stats(spike), null, ones(3), 3);
      assertThat(c.scale())
          .isEqualTo(c.entropyError() < c.absMaxError() ? c.entropyScale() : c.absMaxScale());
    }
  }

  @Test
  void shouldEstimateTheSmoothedRangeFromChannelMaxima() {
    LayerStats st = stats(true);
    float[] s = new float[N];
    java.util.Arrays.fill(s, 1);
    s[0] = 40; // channel 0 (the spike) divided by 40
    InputScale.Histogram h = InputScale.smoothedHistogram(st, s);
    float expected = 0;
    for (int j = 0; j < N; j++) {
      expected = Math.max(expected, st.absMax()[j] / s[j]);
    }
    assertThat(h.max()).isEqualTo(expected);
    long total = 0;
    for (long c : h.counts()) {
      total += c;
    }
    assertThat(total)
        .isEqualTo((long) N * TOKENS * N); // every channel maps the whole pooled histogram
  }

  @Test
  void shouldNameTheParamOnAnUnknownValue() {
    assertThat(InputScale.of("Entropy")).isEqualTo(InputScale.ENTROPY);
    assertThatThrownBy(() -> InputScale.of("kl"))
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessageContaining("inputScale");
  }
}
