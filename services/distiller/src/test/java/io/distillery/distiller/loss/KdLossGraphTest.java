package io.distillery.distiller.loss;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.within;

import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import org.junit.jupiter.api.Test;

class KdLossGraphTest {

  @Test
  void shouldMatchReferenceWhenMaskedBatchOfLogits() {
    float[] s = {0f, 1f, 2f, 1f, -1f, 0.5f, 3f, 0f, 0f, 0.2f, 0.1f, -2f};
    float[] t = {1f, 0f, 2f, -1f, 0f, 0.5f, 0f, 3f, 1f, 0.7f, 0.1f, 2f};
    long[] labels = {2, 0, 1, 2};
    float[] mask = {1f, 0f, 1f, 1f};
    float[][] s2 = new float[4][];
    float[][] t2 = new float[4][];
    for (int i = 0; i < 4; i++) {
      s2[i] = java.util.Arrays.copyOfRange(s, i * 3, i * 3 + 3);
      t2[i] = java.util.Arrays.copyOfRange(t, i * 3, i * 3 + 3);
    }
    for (boolean reverse : new boolean[] {false, true}) {
      double expected =
          KdLoss.loss(
              s2,
              t2,
              new int[] {2, 0, 1, 2},
              new boolean[] {true, false, true, true},
              2.0,
              0.7,
              reverse);
      try (NDManager m = NDManager.newBaseManager()) {
        float got =
            KdLossGraph.loss(
                    m.create(s, new Shape(2, 2, 3)),
                    m.create(t, new Shape(2, 2, 3)),
                    labels,
                    mask,
                    2.0,
                    0.7,
                    reverse,
                    m)
                .getFloat();
        assertThat((double) got).isCloseTo(expected, within(1e-5));
      }
    }
  }
}
