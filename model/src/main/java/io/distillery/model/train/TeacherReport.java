package io.distillery.model.train;

import java.util.Map;

/**
 * Outcome of a teacher run, measured on the held-out test split.
 *
 * @param parameters trainable parameter count
 * @param firstLoss loss of the first step
 * @param finalLoss mean loss of the last 10% of steps
 * @param exactMatch fraction of test prompts answered exactly
 * @param exactMatchByTask the same per task id
 * @param perplexity exp of the mean answer-token NLL on the test split
 * @param trainSeconds time in optimizer steps
 * @param totalSeconds training plus evaluation
 * @param trainTokensPerSecond non-pad input tokens per training second
 */
public record TeacherReport(
    long parameters,
    double firstLoss,
    double finalLoss,
    double exactMatch,
    Map<String, Double> exactMatchByTask,
    double perplexity,
    double trainSeconds,
    double totalSeconds,
    double trainTokensPerSecond) {

  public TeacherReport {
    exactMatchByTask = Map.copyOf(exactMatchByTask);
  }
}
