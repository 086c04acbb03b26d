package io.distillery.model.train;

/**
 * Linear warmup from 0 to {@code peak} over {@code warmupSteps}, then cosine decay to {@code peak *
 * minFraction} at {@code totalSteps} (Loshchilov and Hutter, SGDR, arXiv 1608.03983, eq. 5 without
 * restarts).
 */
public record LearningRateSchedule(
    double peak, int warmupSteps, int totalSteps, double minFraction) {

  public LearningRateSchedule {
    if (peak <= 0 || warmupSteps < 0 || totalSteps < 1 || minFraction < 0 || minFraction > 1) {
      throw new IllegalArgumentException(
          "invalid schedule peak="
              + peak
              + " warmup="
              + warmupSteps
              + " total="
              + totalSteps
              + " minFraction="
              + minFraction);
    }
  }

  /** The rate for 1-based {@code step}. */
  public double at(int step) {
    if (step <= warmupSteps) {
      return peak * step / warmupSteps;
    }
    int decaySteps = Math.max(1, totalSteps - warmupSteps);
    double progress = Math.min(1.0, (double) (step - warmupSteps) / decaySteps);
    double cosine = 0.5 * (1 + Math.cos(Math.PI * progress));
    return peak * (minFraction + (1 - minFraction) * cosine);
  }
}
