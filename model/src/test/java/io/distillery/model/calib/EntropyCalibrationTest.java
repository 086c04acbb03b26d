package io.distillery.model.calib;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import org.junit.jupiter.api.Test;

class EntropyCalibrationTest {

  /** 2048 bins over [0, 2048): bin j covers [j, j + 1), so a cut of i bins clips at exactly i. */
  private static long[] laplacianWithOutlier() {
    long[] h = new long[2048];
    for (int j = 0; j < 100; j++) {
      h[j] = Math.round(100_000 * Math.exp(-j / 10.0));
    }
    h[2000] = 1; // one far outlier sets abs-max to 2001
    return h;
  }

  @Test
  void shouldClipWellBelowTheMaxWhenATinyOutlierIsFarFromTheBulk() {
    float clip = EntropyCalibration.clip(laplacianWithOutlier(), 2048f, 128);

    // the bulk lies in [0, 100); abs-max calibration would use 2001. With 128 levels, any cut up to
    // 128 bins keeps
    // every bulk bin on its own level, so the best cut is the smallest one that still covers the
    // bulk.
    assertThat(clip).isGreaterThanOrEqualTo(100f).isLessThanOrEqualTo(256f);
  }

  @Test
  void shouldKeepTheWholeRangeWhenTheMassIsSpreadEvenlyOverIt() {
    long[] h = new long[2048];
    java.util.Arrays.fill(h, 1000);

    // uniform mass: merging bins loses nothing, while any cut below the end folds a large tail into
    // one bin
    assertThat(EntropyCalibration.bestCut(h, 128)).isEqualTo(2048);
    assertThat(EntropyCalibration.clip(h, 4f, 128)).isEqualTo(4f);
  }

  @Test
  void shouldScaleTheCutByTheHistogramRangeWhenReadFromLayerStats() {
    long[] h = laplacianWithOutlier();
    int cut = EntropyCalibration.bestCut(h, 128);
    LayerStats stats =
        new LayerStats("l", 1, 1, new float[1], new float[1], new float[1], null, h, 8f);

    assertThat(EntropyCalibration.clip(stats)).isEqualTo(cut * 8f / 2048);
  }

  @Test
  void shouldMeasureZeroDivergenceWhenNothingIsClippedOrMerged() {
    long[] h = new long[128];
    for (int j = 0; j < h.length; j++) {
      h[j] = j % 3 + 1;
    }
    double kl = EntropyCalibration.divergence(h, 0, 128, 128, new double[128], new double[128]);

    assertThat(kl).isCloseTo(0.0, org.assertj.core.api.Assertions.within(1e-12));
  }

  @Test
  void shouldRejectAHistogramWithFewerBinsThanLevels() {
    assertThatThrownBy(() -> EntropyCalibration.bestCut(new long[64], 128))
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessageContaining("128 histogram bins");
  }
}
