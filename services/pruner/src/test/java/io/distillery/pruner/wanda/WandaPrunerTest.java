package io.distillery.pruner.wanda;

import static org.assertj.core.api.Assertions.assertThat;

import io.distillery.pruner.SparsityPattern;
import io.distillery.pruner.magnitude.MagnitudePruner;
import org.junit.jupiter.api.Test;

class WandaPrunerTest {

  // one output row, four inputs; input channel 0 has a large norm (an "outlier feature")
  static final float[] W = {0.1f, 0.5f, -0.4f, 0.3f};
  static final float[] NORMS = {10f, 1f, 1f, 1f};

  @Test
  void shouldKeepSmallWeightOnLargeNormChannelWhenMagnitudeWouldPruneIt() {
    SparsityPattern p24 = SparsityPattern.nOfM(2, 4);
    // magnitude: |w| = 0.1, 0.5, 0.4, 0.3 -> prune inputs 0 and 3
    assertThat(new MagnitudePruner(p24).prune("l", W, 1, 4)).containsExactly(0f, 0.5f, -0.4f, 0f);
    // Wanda: |w| * ||x|| = 1.0, 0.5, 0.4, 0.3 -> prune inputs 2 and 3, keep the 0.1 on the outlier
    // channel
    assertThat(new WandaPruner(p24, m -> NORMS).prune("l", W, 1, 4))
        .containsExactly(0.1f, 0.5f, 0f, 0f);
  }

  @Test
  void shouldPrunePerOutputRowWhenUnstructured() {
    // two rows; row 1 is ten times row 0, so a global threshold would empty row 0, per-row keeps
    // half of each
    float[] w = {1f, 2f, 3f, 4f, 10f, 20f, 30f, 40f};
    float[] norms = {
      4f, 3f, 2f, 1f
    }; // scores row 0: 4, 6, 6, 4 -> prune inputs 0 and 3 (ties: earlier index first)
    float[] pruned =
        new WandaPruner(SparsityPattern.unstructured(0.5), m -> norms).prune("l", w, 2, 4);
    assertThat(pruned).containsExactly(0f, 2f, 3f, 0f, 0f, 20f, 30f, 0f);
  }
}
