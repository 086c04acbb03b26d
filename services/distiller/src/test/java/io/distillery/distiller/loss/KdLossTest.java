package io.distillery.distiller.loss;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.assertj.core.api.Assertions.within;

import org.junit.jupiter.api.Test;

class KdLossTest {

  @Test
  void shouldBeZeroKlWhenDistributionsAreIdentical() {
    float[][] logits = {{1f, 2f, 3f}};
    double loss = KdLoss.loss(logits, logits, new int[] {0}, new boolean[] {true}, 4.0, 1.0, false);
    assertThat(loss).isCloseTo(0.0, within(1e-12));
  }

  @Test
  void shouldMatchHandComputedKlWhenTwoClasses() {
    // teacher p = (0.5, 0.5) from logits (0,0); student q = (1/(1+e), e/(1+e)) from logits (0,1), T
    // = 1
    double q0 = 1 / (1 + Math.E);
    double q1 = Math.E / (1 + Math.E);
    double expected = 0.5 * Math.log(0.5 / q0) + 0.5 * Math.log(0.5 / q1);
    double loss =
        KdLoss.loss(
            new float[][] {{0f, 1f}},
            new float[][] {{0f, 0f}},
            new int[] {0},
            new boolean[] {true},
            1.0,
            1.0,
            false);
    assertThat(loss).isCloseTo(expected, within(1e-9));
    double reverse = q0 * Math.log(q0 / 0.5) + q1 * Math.log(q1 / 0.5);
    assertThat(
            KdLoss.loss(
                new float[][] {{0f, 1f}},
                new float[][] {{0f, 0f}},
                new int[] {0},
                new boolean[] {true},
                1.0,
                1.0,
                true))
        .isCloseTo(reverse, within(1e-9));
  }

  @Test
  void shouldScaleKlByTemperatureSquaredAndMixCeWhenAlphaBelowOne() {
    float[][] s = {{0f, 2f}};
    float[][] t = {{2f, 0f}};
    double temp = 2.0;
    double kl = KdLoss.kl(KdLoss.logSoftmax(t[0], temp), KdLoss.logSoftmax(s[0], temp));
    double ce = Math.log(1 + Math.exp(2)); // -log softmax(s)[0]
    double loss = KdLoss.loss(s, t, new int[] {0}, new boolean[] {true}, temp, 0.7, false);
    assertThat(loss).isCloseTo(0.7 * 4 * kl + 0.3 * ce, within(1e-9));
  }

  @Test
  void shouldIgnoreMaskedTokensWhenAveraging() {
    float[][] s = {{0f, 0f}, {5f, -5f}};
    float[][] t = {{0f, 0f}, {-5f, 5f}};
    double loss = KdLoss.loss(s, t, new int[] {0, 0}, new boolean[] {true, false}, 1.0, 1.0, false);
    assertThat(loss).isCloseTo(0.0, within(1e-12));
    assertThatThrownBy(
            () ->
                KdLoss.loss(s, t, new int[] {0, 0}, new boolean[] {false, false}, 1.0, 1.0, false))
        .hasMessageContaining("no token");
  }
}
