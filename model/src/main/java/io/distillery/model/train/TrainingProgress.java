package io.distillery.model.train;

import java.util.Locale;
import java.util.Map;

/**
 * One optimizer step as reported to a {@link ProgressListener}.
 *
 * @param step 1-based step just finished
 * @param steps total steps of the run
 * @param loss mean answer-token NLL of this step's batch (nats)
 * @param learningRate rate used for this step
 * @param gradientNorm global gradient norm before clipping
 * @param tokensPerSecond non-pad input tokens per second over the run so far
 * @param elapsedSeconds training time so far
 * @param validationExactMatch exact match per task on the validation split, measured after this
 *     step; empty on steps without an evaluation
 */
public record TrainingProgress(
    int step,
    int steps,
    double loss,
    double learningRate,
    double gradientNorm,
    double tokensPerSecond,
    double elapsedSeconds,
    Map<String, Double> validationExactMatch) {

  public TrainingProgress {
    validationExactMatch = Map.copyOf(validationExactMatch);
  }

  /** One progress-bar line: {@code [#####.....] step/steps loss=.. lr=.. gnorm=.. tok/s=.. Ns}. */
  public String bar() {
    int width = 30;
    int filled = (int) ((long) width * step / steps);
    return String.format(
        Locale.ROOT,
        "[%s%s] %d/%d loss=%.4f lr=%.2e gnorm=%.2f tok/s=%.0f %.0fs",
        "#".repeat(filled),
        ".".repeat(width - filled),
        step,
        steps,
        loss,
        learningRate,
        gradientNorm,
        tokensPerSecond,
        elapsedSeconds);
  }
}
