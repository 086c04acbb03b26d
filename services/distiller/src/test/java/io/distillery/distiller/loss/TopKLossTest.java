package io.distillery.distiller.loss;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.within;

import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import io.distillery.distiller.teacher.TopKLogits;
import io.distillery.distiller.teacher.TopKSelector;
import java.util.Arrays;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

class TopKLossTest {

  static final int V = 7;
  static final int TOKENS = 4; // [2, 2, V]: token 1 is masked out

  static float[] random(long seed) {
    SplittableRandom r = new SplittableRandom(seed);
    float[] out = new float[TOKENS * V];
    for (int i = 0; i < out.length; i++) {
      out[i] = (float) (3 * r.nextGaussian());
    }
    return out;
  }

  static float[][] rows(float[] flat) {
    float[][] out = new float[TOKENS][];
    for (int t = 0; t < TOKENS; t++) {
      out[t] = Arrays.copyOfRange(flat, t * V, (t + 1) * V);
    }
    return out;
  }

  /** The teacher's top-k at the three counted tokens (0, 2, 3), positions 0..2. */
  static TopKLogits topK(float[] teacher, int k) {
    TopKSelector s = new TopKSelector(3, k, V);
    int p = 0;
    for (int t : new int[] {0, 2, 3}) {
      s.offer(p++, 0, teacher, t * V, V);
    }
    return s.finish("f", new int[] {0, 3});
  }

  static final int[] POSITIONS = {0, -1, 1, 2};
  static final long[] LABELS = {2, 0, 6, 3};
  static final float[] MASK = {1f, 0f, 1f, 1f};

  @Test
  void shouldEqualTheFullLogitLossWhenKIsTheVocabulary() {
    float[] s = random(1);
    float[] t = random(2);
    TopKLogits all = topK(t, V);
    for (boolean reverse : new boolean[] {false, true}) {
      double full =
          KdLoss.loss(
              rows(s),
              rows(t),
              new int[] {2, 0, 6, 3},
              new boolean[] {true, false, true, true},
              2.0,
              0.7,
              reverse);
      double cached =
          KdLoss.topKLoss(rows(s), all, POSITIONS, new int[] {2, 0, 6, 3}, 2.0, 0.7, reverse);
      assertThat(cached).isCloseTo(full, within(1e-5));
      try (NDManager m = NDManager.newBaseManager()) {
        float graphFull =
            KdLossGraph.loss(
                    m.create(s, new Shape(2, 2, V)),
                    m.create(t, new Shape(2, 2, V)),
                    LABELS,
                    MASK,
                    2.0,
                    0.7,
                    reverse,
                    m)
                .getFloat();
        float graphCached =
            KdLossGraph.topKLoss(
                    m.create(s, new Shape(2, 2, V)), all, POSITIONS, LABELS, 2.0, 0.7, reverse, m)
                .getFloat();
        assertThat((double) graphCached).isCloseTo(graphFull, within(1e-5));
        assertThat((double) graphCached).isCloseTo(full, within(1e-5));
      }
    }
  }

  @Test
  void shouldMatchTheReferenceWhenKIsBelowTheVocabulary() {
    float[] s = random(3);
    float[] t = random(4);
    TopKLogits three = topK(t, 3);
    assertThat(three.complete()).isFalse();
    for (boolean reverse : new boolean[] {false, true}) {
      for (double temperature : new double[] {1.0, 4.0}) {
        double expected =
            KdLoss.topKLoss(
                rows(s), three, POSITIONS, new int[] {2, 0, 6, 3}, temperature, 0.6, reverse);
        try (NDManager m = NDManager.newBaseManager()) {
          float got =
              KdLossGraph.topKLoss(
                      m.create(s, new Shape(2, 2, V)),
                      three,
                      POSITIONS,
                      LABELS,
                      temperature,
                      0.6,
                      reverse,
                      m)
                  .getFloat();
          assertThat((double) got).isCloseTo(expected, within(1e-5));
        }
      }
    }
  }

  @Test
  void shouldLeaveOnlyTheLabelLossWhenTheStudentIsTheTeacher() {
    float[] t = random(5);
    TopKLogits three = topK(t, 3);
    double ce = 0;
    int[] labels = {2, 0, 6, 3};
    for (int token : new int[] {0, 2, 3}) {
      ce -= KdLoss.logSoftmax(rows(t)[token], 1.0)[labels[token]];
    }
    ce /= 3;
    for (boolean reverse : new boolean[] {false, true}) {
      double loss = KdLoss.topKLoss(rows(t), three, POSITIONS, labels, 4.0, 0.5, reverse);
      assertThat(loss).isCloseTo(0.5 * ce, within(1e-5)); // the KL over the buckets is zero
    }
    // a student that differs from the teacher only outside the kept ids, with the same rest mass,
    // has no KD loss either: the rest is one bucket
    float[] shifted = t.clone();
    int p = 0;
    for (int token : new int[] {0, 2, 3}) {
      int[] kept = Arrays.copyOfRange(three.ids(), p * 3, p * 3 + 3);
      int a = -1;
      int b = -1;
      for (int v = 0; v < V && b < 0; v++) {
        final int id = v;
        if (Arrays.stream(kept).noneMatch(x -> x == id)) {
          if (a < 0) {
            a = v;
          } else {
            b = v;
          }
        }
      }
      float swap = shifted[token * V + a];
      shifted[token * V + a] = shifted[token * V + b];
      shifted[token * V + b] = swap;
      p++;
    }
    double kd = KdLoss.topKLoss(rows(shifted), three, POSITIONS, labels, 2.0, 1.0, false);
    assertThat(kd).isCloseTo(0.0, within(1e-6));
  }
}
