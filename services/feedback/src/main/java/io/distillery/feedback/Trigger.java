package io.distillery.feedback;

/**
 * One incident the policy acted on: a window over the thresholds that started a re-distillation run
 * (FIRED) or could not (FAILED, with the reason, e.g. a missing recipe). The run id is derived from
 * the deployment and the window start, so the same incident always maps to the same run.
 */
record Trigger(
    String runId,
    String deploymentId,
    Outcome outcome,
    long windowStart,
    long windowEnd,
    long misfires,
    long requests,
    double rate,
    String datasetUri,
    String reason,
    long at) {

  enum Outcome {
    FIRED,
    FAILED
  }
}
