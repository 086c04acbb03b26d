package io.distillery.pruner.sparsegpt;

import static org.assertj.core.api.Assertions.assertThat;

import io.distillery.model.linalg.HessianInverse;
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
    float[] sgpt =
        new SparseGptPruner(p24, m -> HessianInverse.narrowed(calib.hessian()), 0.01, 16)
            .prune("l", w, rows, cols);
    double eMag = calib.outputError(w, mag, rows);
    double eWanda = calib.outputError(w, wanda, rows);
    double eSgpt = calib.outputError(w, sgpt, rows);
    // the error propagation exploits the correlation: a clear margin, not a tie
    assertThat(eSgpt).isLessThan(0.8 * eMag);
    assertThat(eSgpt).isLessThan(eWanda);
  }

  @Test
  void shouldEqualMagnitudeMaskWithoutUpdatesWhenHessianIsIdentity() {
    // H = I (dampened 1%): U is diagonal, so scores are w^2 times a constant and no error reaches
    // other columns
    int rows = 3;
    int cols = 8;
    float[] w = CorrelatedInputs.randomWeight(rows, cols, 21);
    double[] identity = new double[cols * cols];
    for (int i = 0; i < cols; i++) {
      identity[i * cols + i] = 1;
    }
    SparsityPattern p24 = SparsityPattern.nOfM(2, 4);
    float[] sgpt =
        new SparseGptPruner(p24, m -> HessianInverse.narrowed(identity), 0.01, 8)
            .prune("l", w, rows, cols);
    float[] mag = new MagnitudePruner(p24).prune("l", w, rows, cols);
    for (int i = 0; i < w.length; i++) {
      assertThat(sgpt[i]).isCloseTo(mag[i], org.assertj.core.api.Assertions.within(1e-6f));
    }
  }

  @Test
  void shouldMatchAnEagerRowByRowSparseGptWhenTheLazyUpdateRunsNatively() {
    int rows = 160;
    int cols =
        384; // three blocks of 128: the errors of two blocks reach later columns as native products
    float[] w = CorrelatedInputs.randomWeight(rows, cols, 31);
    double[] h = CorrelatedInputs.correlated(2 * cols, cols, 32).hessian();
    for (SparsityPattern pattern :
        new SparsityPattern[] {SparsityPattern.nOfM(2, 4), SparsityPattern.unstructured(0.5)}) {
      float[] lazy =
          new SparseGptPruner(pattern, m -> HessianInverse.narrowed(h), 0.01, 128)
              .prune("l", w, rows, cols);
      float[] eager = eager(pattern, w, rows, cols, h, 128);
      int sameMask = 0;
      double diff = 0;
      double norm = 0;
      for (int i = 0; i < w.length; i++) {
        sameMask += (lazy[i] == 0) == (eager[i] == 0) ? 1 : 0;
        diff += (lazy[i] - eager[i]) * (lazy[i] - eager[i]);
        norm += eager[i] * eager[i];
      }
      // the two differ only in the order of floating-point additions: a score on a tie could flip a
      // mask entry
      assertThat(sameMask).as("%s", pattern).isGreaterThanOrEqualTo(w.length - w.length / 1000);
      assertThat(Math.sqrt(diff / norm)).as("%s", pattern).isLessThan(1e-3);
    }
  }

  /** Algorithm 1 row by row, every pruned weight's error applied to every later column at once. */
  static float[] eager(
      SparsityPattern pattern, float[] weight, int rows, int cols, double[] h, int block) {
    double[] u =
        io.distillery.model.linalg.HessianInverse.upperCholeskyOfInverseScalar(h, cols, 0.01);
    float[] out = new float[weight.length];
    for (int r = 0; r < rows; r++) {
      double[] w = new double[cols];
      for (int j = 0; j < cols; j++) {
        w[j] = weight[r * cols + j];
      }
      boolean[] mask = new boolean[cols];
      double[] score = new double[cols];
      for (int b1 = 0; b1 < cols; b1 += block) {
        int b2 = Math.min(b1 + block, cols);
        for (int i = b1; i < b2; i++) {
          score[i] = w[i] * w[i] / (u[i * cols + i] * u[i * cols + i]);
        }
        if (pattern instanceof SparsityPattern.Unstructured un) {
          io.distillery.pruner.PruneMask.lowest(score, b1, b2 - b1, un.pruned(b2 - b1), mask);
        }
        for (int i = b1; i < b2; i++) {
          if (pattern instanceof SparsityPattern.NOfM nm && i % nm.m() == 0) {
            for (int k = i; k < i + nm.m(); k++) {
              score[k] = w[k] * w[k] / (u[k * cols + k] * u[k * cols + k]);
            }
            io.distillery.pruner.PruneMask.lowest(score, i, nm.m(), nm.n(), mask);
          }
          if (mask[i]) {
            double err = w[i] / u[i * cols + i];
            w[i] = 0;
            for (int k = i + 1; k < cols; k++) {
              w[k] -= err * u[i * cols + k];
            }
          }
        }
      }
      for (int j = 0; j < cols; j++) {
        out[r * cols + j] = mask[j] ? 0f : (float) w[j];
      }
    }
    return out;
  }
}
