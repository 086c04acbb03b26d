package io.distillery.quantizer.smoothquant;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.within;

import io.distillery.model.quant.GroupQuantizer;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/**
 * SmoothQuant's scales at an alpha where alpha and 1 - alpha differ (eq. 4 of arXiv 2211.10438),
 * and the claim the method exists for: migrating activation outliers into the weights lowers the
 * W8A8 output error.
 */
class SmoothQuantAlphaTest {

  @Test
  void shouldComputeScalesByHandAtAlpha08() {
    // W is 2x3; column maxima |W| = 1, 32, 32; activation maxima 32, 1, 243
    float[] w = {1, -32, 32, 0.5f, 4, -3};
    float[] absMax = {32, 1, 243};
    float[] s = SmoothQuant.scales(absMax, List.of(w), new int[] {2}, 3, 0.8);
    // s_j = max|X_j|^0.8 / max|W_j|^0.2: 32^0.8 / 1 = 16; 1 / 32^0.2 = 0.5; 243^0.8 / 32^0.2 = 81 /
    // 2
    assertThat((double) s[0]).isCloseTo(16, within(1e-4));
    assertThat((double) s[1]).isCloseTo(0.5, within(1e-6));
    assertThat((double) s[2]).isCloseTo(40.5, within(1e-4));
    // alpha and 1 - alpha swapped would give 32^0.2 = 2 for the first channel
    float[] swapped = SmoothQuant.scales(absMax, List.of(w), new int[] {2}, 3, 0.2);
    assertThat((double) swapped[0]).isCloseTo(2, within(1e-5));
  }

  @Test
  void shouldMoveTheActivationRangeIntoTheWeightsAsAlphaGrows() {
    float[] w = {1, -32, 32, 0.5f, 4, -3};
    float[] absMax = {32, 1, 243};
    // smoothed activation maxima absMax / s: alpha 0.8 leaves 32 / 16 = 2, 1 / 0.5 = 2, 243 / 40.5
    // = 6
    float[] s = SmoothQuant.scales(absMax, List.of(w), new int[] {2}, 3, 0.8);
    assertThat((double) SmoothQuant.inputScale(absMax, s)).isCloseTo(6.0 / 127, within(1e-6));
    float[] half = SmoothQuant.scales(absMax, List.of(w), new int[] {2}, 3, 0.5);
    assertThat(SmoothQuant.inputScale(absMax, s)).isLessThan(SmoothQuant.inputScale(absMax, half));
  }

  @Test
  void shouldLowerW8A8ErrorOnAnInputWithOutlierChannels() {
    int n = 64;
    int rows = 32;
    int tokens = 256;
    SplittableRandom random = new SplittableRandom(8);
    float[] w = new float[rows * n];
    for (int i = 0; i < w.length; i++) {
      w[i] = (float) (random.nextGaussian() * 0.05);
    }
    float[] x = new float[tokens * n];
    float[] absMax = new float[n];
    for (int t = 0; t < tokens; t++) {
      for (int j = 0; j < n; j++) {
        double loud =
            j == 5 || j == 40 ? 60 : 1; // two channels 60x the rest, as LLM.int8() reports
        x[t * n + j] = (float) (random.nextGaussian() * loud);
        absMax[j] = Math.max(absMax[j], Math.abs(x[t * n + j]));
      }
    }
    double naive = w8a8Error(w, x, rows, n, tokens, null, SmoothQuant.inputScale(absMax, null));
    float[] s = SmoothQuant.scales(absMax, List.of(w), new int[] {rows}, n, 0.5);
    double smoothed = w8a8Error(w, x, rows, n, tokens, s, SmoothQuant.inputScale(absMax, s));
    assertThat(smoothed).isLessThan(naive / 3);
  }

  /**
   * ||W X - Q8(W diag s) Q8(diag(s)^-1 X)|| / ||W X||, INT8 weights per row, one static input
   * scale.
   */
  static double w8a8Error(
      float[] w, float[] x, int rows, int n, int tokens, float[] s, float inputScale) {
    float[] ws = w.clone();
    if (s != null) {
      SmoothQuant.fold(new float[n], List.of(ws), new int[] {rows}, n, s);
    }
    float[] wq = GroupQuantizer.int8PerChannel(ws, rows, n).dequantize();
    double err = 0;
    double ref = 0;
    for (int t = 0; t < tokens; t++) {
      for (int r = 0; r < rows; r++) {
        double y = 0;
        double yq = 0;
        for (int j = 0; j < n; j++) {
          double xj = x[t * n + j];
          double xs = xj / (s == null ? 1 : s[j]);
          double q = Math.max(-128, Math.min(127, Math.rint(xs / inputScale))) * inputScale;
          y += w[r * n + j] * xj;
          yq += wq[r * n + j] * q;
        }
        err += (y - yq) * (y - yq);
        ref += y * y;
      }
    }
    return Math.sqrt(err / ref);
  }
}
