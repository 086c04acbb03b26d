package io.distillery.pruner.sparsegpt;

import static org.assertj.core.api.Assertions.assertThat;

import io.distillery.pruner.CorrelatedInputs;
import io.distillery.pruner.SparsityPattern;
import io.distillery.pruner.magnitude.MagnitudePruner;
import io.distillery.pruner.wanda.WandaPruner;
import org.junit.jupiter.api.Test;

class SparseGptPrunerTest {

  @Test
  void shouldReconstructOutputsBetterThanMagnitudeWhenInputsAreCorrelated() {
    int rows = 16;
    int cols = 32;
    float[] w = CorrelatedInputs.randomWeight(rows, cols, 11);
    CorrelatedInputs calib = CorrelatedInputs.correlated(512, cols, 12);
    SparsityPattern p24 = SparsityPattern.nOfM(2, 4);
    float[] mag = new MagnitudePruner(p24).prune("l", w, rows, cols);
    float[] wanda = new WandaPruner(p24, m -> calib.norms()).prune("l", w, rows, cols);
    float[] sgpt = new SparseGptPruner(p24, m -> calib.hessian(), 0.01, 16).prune("l", w, rows, cols);
    double eMag = calib.outputError(w, mag, rows);
    double eWanda = calib.outputError(w, wanda, rows);
    double eSgpt = calib.outputError(w, sgpt, rows);
    // the error propagation exploits the correlation: a clear margin, not a tie
    assertThat(eSgpt).isLessThan(0.8 * eMag);
    assertThat(eSgpt).isLessThan(eWanda);
  }

  @Test
  void shouldEqualMagnitudeMaskWithoutUpdatesWhenHessianIsIdentity() {
    // H = I (dampened 1%): U is diagonal, so scores are w^2 times a constant and no error reaches other columns
    int rows = 3;
    int cols = 8;
    float[] w = CorrelatedInputs.randomWeight(rows, cols, 21);
    double[] identity = new double[cols * cols];
    for (int i = 0; i < cols; i++) {
      identity[i * cols + i] = 1;
    }
    SparsityPattern p24 = SparsityPattern.nOfM(2, 4);
    float[] sgpt = new SparseGptPruner(p24, m -> identity, 0.01, 8).prune("l", w, rows, cols);
    float[] mag = new MagnitudePruner(p24).prune("l", w, rows, cols);
    for (int i = 0; i < w.length; i++) {
      assertThat(sgpt[i]).isCloseTo(mag[i], org.assertj.core.api.Assertions.within(1e-6f));
    }
  }
}
