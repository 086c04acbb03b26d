package io.distillery.pruner;

import static org.assertj.core.api.Assertions.assertThat;

import io.distillery.model.linalg.HessianInverse;
import io.distillery.pruner.magnitude.MagnitudePruner;
import io.distillery.pruner.sparsegpt.SparseGptPruner;
import io.distillery.pruner.wanda.WandaPruner;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

/**
 * Pattern validity for every method on the same random layer with correlated calibration inputs.
 */
class MaskPatternsTest {

  static final int ROWS = 12;
  static final int COLS = 32;

  static Map<String, LinearPruner> pruners(SparsityPattern pattern, CorrelatedInputs calib) {
    return Map.of(
        "magnitude", new MagnitudePruner(pattern),
        "wanda", new WandaPruner(pattern, m -> calib.norms()),
        "sparsegpt",
            new SparseGptPruner(pattern, m -> HessianInverse.narrowed(calib.hessian()), 0.01, 16));
  }

  @Test
  void shouldLeaveExactlyTwoZerosInEveryGroupOfFourWhenPatternIsTwoFour() {
    float[] w = CorrelatedInputs.randomWeight(ROWS, COLS, 1);
    CorrelatedInputs calib = CorrelatedInputs.correlated(256, COLS, 2);
    pruners(SparsityPattern.nOfM(2, 4), calib)
        .forEach(
            (name, pruner) -> {
              float[] p = pruner.prune("layer", w, ROWS, COLS);
              for (int r = 0; r < ROWS; r++) {
                for (int g = 0; g < COLS; g += 4) {
                  int zeros = 0;
                  for (int j = g; j < g + 4; j++) {
                    zeros += p[r * COLS + j] == 0f ? 1 : 0;
                  }
                  assertThat(zeros).as("%s row %d group %d", name, r, g / 4).isEqualTo(2);
                }
              }
            });
  }

  @Test
  void shouldReachRequestedSparsityPerRowWhenUnstructured() {
    float[] w = CorrelatedInputs.randomWeight(ROWS, COLS, 3);
    CorrelatedInputs calib = CorrelatedInputs.correlated(256, COLS, 4);
    for (double sparsity : List.of(0.3, 0.5, 0.7)) {
      pruners(SparsityPattern.unstructured(sparsity), calib)
          .forEach(
              (name, pruner) -> {
                float[] p = pruner.prune("layer", w, ROWS, COLS);
                for (int r = 0; r < ROWS; r++) {
                  int zeros = 0;
                  for (int j = 0; j < COLS; j++) {
                    zeros += p[r * COLS + j] == 0f ? 1 : 0;
                  }
                  // SparseGPT picks per block of 16: round(16 s) per block, twice
                  int expected =
                      name.equals("sparsegpt")
                          ? 2 * (int) Math.round(16 * sparsity)
                          : (int) Math.round(COLS * sparsity);
                  assertThat(zeros)
                      .as("%s sparsity %s row %d", name, sparsity, r)
                      .isEqualTo(expected);
                  assertThat(Math.abs(zeros - COLS * sparsity)).isLessThanOrEqualTo(1.0);
                }
              });
    }
  }

  @Test
  void shouldKeepUnprunedWeightsUnchangedWhenMagnitudeOrWanda() {
    float[] w = CorrelatedInputs.randomWeight(ROWS, COLS, 5);
    CorrelatedInputs calib = CorrelatedInputs.correlated(64, COLS, 6);
    for (String name : List.of("magnitude", "wanda")) {
      float[] p =
          pruners(SparsityPattern.nOfM(2, 4), calib).get(name).prune("layer", w, ROWS, COLS);
      for (int i = 0; i < w.length; i++) {
        assertThat(p[i] == 0f || p[i] == w[i]).as("%s weight %d", name, i).isTrue();
      }
    }
  }
}
