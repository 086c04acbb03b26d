package io.distillery.pruner.sparsegpt;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.within;

import io.distillery.model.linalg.HessianInverse;
import io.distillery.pruner.SparsityPattern;
import io.distillery.pruner.magnitude.MagnitudePruner;
import org.junit.jupiter.api.Test;

/**
 * Unstructured SparseGPT against magnitude on a case small enough to follow by hand: inputs x0 and
 * x1 almost equal (covariance 0.999), x2 and x3 independent, all of unit variance; one row w =
 * [0.3, 1, 0.5, 0.55]; 50% sparsity.
 *
 * <p>Magnitude prunes the two smallest, 0.3 and 0.5: output error e C e^T = 0.09 + 0.25 = 0.34.
 * SparseGPT's score w_j^2 / [H^-1]_jj is tiny for w0 (x0 is nearly x1, so [H^-1]_00 is large), so
 * it prunes w0 and w2, and the OBS update moves w0 onto w1 (w1 + 0.3 * 0.999 / 1.01 with 1%
 * dampening, about 1.297): error about 0.09 + 0.088 - 0.178 + 0.25, i.e. little more than the 0.25
 * of w2 alone.
 */
class SparseGptUnstructuredTest {

  static final int COLS = 4;
  static final double[] COV = {1, 0.999, 0, 0, 0.999, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1};

  static double outputError(float[] w, float[] pruned) {
    double total = 0;
    for (int a = 0; a < COLS; a++) {
      for (int b = 0; b < COLS; b++) {
        total += (w[a] - pruned[a]) * COV[a * COLS + b] * (w[b] - pruned[b]);
      }
    }
    return total;
  }

  @Test
  void shouldBeatMagnitudeByMovingAPrunedWeightOntoItsCorrelatedTwin() {
    float[] w = {0.3f, 1f, 0.5f, 0.55f};
    double[] hessian = new double[COV.length];
    for (int i = 0; i < COV.length; i++) {
      hessian[i] = 2 * COV[i]; // H = 2 E[x x^T]
    }
    SparsityPattern half = SparsityPattern.unstructured(0.5);
    float[] sgpt =
        new SparseGptPruner(half, m -> HessianInverse.narrowed(hessian), 0.01, COLS)
            .prune("l", w, 1, COLS);
    float[] mag = new MagnitudePruner(half).prune("l", w, 1, COLS);

    assertThat(mag).containsExactly(0f, 1f, 0f, 0.55f);
    assertThat(sgpt[0]).isZero();
    assertThat(sgpt[2]).isZero();
    assertThat((double) sgpt[1]).isCloseTo(1 + 0.3 * 0.999 * 2 / 2.02, within(2e-3));
    assertThat((double) sgpt[3])
        .isCloseTo(0.55, within(1e-6)); // independent of the pruned inputs: no update

    double eMag = outputError(w, mag);
    double eSgpt = outputError(w, sgpt);
    assertThat(eMag).isCloseTo(0.34, within(1e-6));
    assertThat(eSgpt).isCloseTo(0.25, within(0.01));
    assertThat(eSgpt).isLessThan(0.8 * eMag);
  }
}
