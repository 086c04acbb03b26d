package io.distillery.model.llama;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.within;
import static org.assertj.core.api.Assertions.withinPercentage;

import io.distillery.model.config.LlamaConfig;
import io.distillery.model.config.RopeScaling;
import org.junit.jupiter.api.Test;

class RotaryEmbeddingTest {

  private static LlamaConfig config(int headDim, RopeScaling scaling) {
    return TinyModels.tiny()
        .numAttentionHeads(4)
        .numKeyValueHeads(4)
        .headDim(headDim)
        .ropeTheta(10000)
        .ropeScaling(scaling)
        .maxPositionEmbeddings(16)
        .build();
  }

  @Test
  void shouldUseInverseThetaPowersWhenUnscaled() {
    // d = 8: theta^(-2i/8) for i = 0..3 = 1, 0.1, 0.01, 0.001
    assertThat(new RotaryEmbedding(config(8, null)).invFreq())
        .containsExactly(new float[] {1f, 0.1f, 0.01f, 0.001f}, within(1e-9f));
  }

  @Test
  void shouldDivideFrequenciesWhenScalingIsLinear() {
    assertThat(new RotaryEmbedding(config(8, RopeScaling.linear(4))).invFreq())
        .containsExactly(new float[] {0.25f, 0.025f, 0.0025f, 0.00025f}, within(1e-9f));
  }

  @Test
  void shouldBlendFrequenciesWhenScalingIsLlama3() {
    // factor 8, low 1, high 4, original 8192: wavelengths above 8192 are divided by 8, below 2048
    // kept,
    // in between blended with smooth = (8192 / wavelength - 1) / 3.
    // d = 16, theta 10000: inv_i = 10^(-i/2); wavelengths 2*pi/inv_i = 6.28, 19.9, 62.8, 199, 628,
    // 1987 (kept),
    // 6283 (blended), 19869 (divided).
    float[] inv = new RotaryEmbedding(config(16, RopeScaling.llama3(8, 1, 4, 8192))).invFreq();
    assertThat(inv[0]).isEqualTo(1f);
    assertThat((double) inv[5]).isCloseTo(Math.pow(10, -2.5), withinPercentage(1e-4));
    double wavelength6 = 2 * Math.PI / 0.001;
    double smooth = (8192 / wavelength6 - 1) / 3;
    assertThat(smooth).isCloseTo(0.10126, within(1e-5));
    assertThat((double) inv[6])
        .isCloseTo((1 - smooth) * 0.001 / 8 + smooth * 0.001, withinPercentage(1e-4));
    assertThat((double) inv[7]).isCloseTo(Math.pow(10, -3.5) / 8, withinPercentage(1e-4));
  }

  @Test
  void shouldGrowBaseOnlyBeyondTrainedLengthWhenScalingIsDynamic() {
    RotaryEmbedding plain = new RotaryEmbedding(config(8, null));
    RotaryEmbedding dynamic = new RotaryEmbedding(config(8, RopeScaling.dynamic(2)));
    assertThat(dynamic.tables(10, 6)[0])
        .as("16 positions = trained length")
        .containsExactly(plain.tables(10, 6)[0]);
    // 32 positions, L = 16, factor 2: base = 10000 * (2 * 32 / 16 - 1)^(8 / 6) = 10000 * 3^(4/3)
    float[] sin = dynamic.tables(31, 1)[1];
    double base = 10000 * Math.pow(3, 4.0 / 3);
    assertThat((double) sin[1]).isCloseTo(Math.sin(31 * Math.pow(base, -2.0 / 8)), within(1e-5));
  }

  @Test
  void shouldRepeatAnglesAcrossHalvesWhenBuildingTables() {
    float[][] tables = new RotaryEmbedding(config(8, null)).tables(3, 2);
    // row for position 4, pair i = 1: angle 4 * 0.1
    int row = 8;
    assertThat(tables[0][row + 1]).isCloseTo((float) Math.cos(0.4), within(1e-6f));
    assertThat(tables[0][row + 5]).isEqualTo(tables[0][row + 1]);
    assertThat(tables[1][row + 1]).isCloseTo((float) Math.sin(0.4), within(1e-6f));
    assertThat(tables[1][row + 5]).isEqualTo(tables[1][row + 1]);
  }
}
