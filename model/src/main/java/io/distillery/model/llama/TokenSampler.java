package io.distillery.model.llama;

import java.util.Arrays;
import java.util.SplittableRandom;

/**
 * Picks tokens from next-token logits under {@link SamplingParams}; one per generation (seeded).
 */
final class TokenSampler {

  private final SamplingParams params;
  private final SplittableRandom random;

  TokenSampler(SamplingParams params) {
    this.params = params;
    this.random = new SplittableRandom(params.seed());
  }

  int next(float[] logits) {
    if (params.isGreedy()) {
      return argMax(logits);
    }
    double max = Double.NEGATIVE_INFINITY;
    for (float logit : logits) {
      max = Math.max(max, logit / params.temperature());
    }
    if (Double.isNaN(max) || Double.isInfinite(max)) {
      throw new IllegalStateException("logits are not finite; cannot sample");
    }
    double[] weights = new double[logits.length];
    double total = 0;
    for (int i = 0; i < logits.length; i++) {
      weights[i] = Math.exp(logits[i] / params.temperature() - max);
      total += weights[i];
    }
    int[] candidates = nucleus(weights, total);
    double kept = 0;
    for (int id : candidates) {
      kept += weights[id];
    }
    double target = random.nextDouble() * kept;
    for (int id : candidates) {
      target -= weights[id];
      if (target < 0) {
        return id;
      }
    }
    return candidates[candidates.length - 1];
  }

  /** Token ids by descending weight, cut after the cumulative weight reaches topP of the total. */
  private int[] nucleus(double[] weights, double total) {
    if (params.topP() >= 1) {
      int[] all = new int[weights.length];
      Arrays.setAll(all, i -> i);
      return all;
    }
    long[] keys = new long[weights.length];
    for (int i = 0; i < weights.length; i++) {
      // weights are >= 0, so their float bits order like the values; ties keep the lower id first
      long bits = Float.floatToIntBits((float) weights[i]);
      keys[i] = (bits << 32) | (0xffffffffL - i);
    }
    Arrays.sort(keys);
    double threshold = params.topP() * total;
    double cumulative = 0;
    int count = 0;
    int[] ids = new int[weights.length];
    for (int k = keys.length - 1; k >= 0; k--) {
      int id = (int) (0xffffffffL - (keys[k] & 0xffffffffL));
      ids[count++] = id;
      cumulative += weights[id];
      if (cumulative >= threshold) {
        break;
      }
    }
    return Arrays.copyOf(ids, count);
  }

  static int argMax(float[] logits) {
    int best = 0;
    for (int i = 1; i < logits.length; i++) {
      if (logits[i] > logits[best]) {
        best = i;
      }
    }
    if (Float.isNaN(logits[best])) {
      throw new IllegalStateException("logits are NaN; cannot pick a token");
    }
    return best;
  }
}
