package io.distillery.platform.model.train;

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
public record TrainingProgress(int step, int steps, double loss, double learningRate, double gradientNorm, double tokensPerSecond,
        double elapsedSeconds, java.util.Map<String, Double> validationExactMatch) {

    public TrainingProgress {
        validationExactMatch = java.util.Map.copyOf(validationExactMatch);
    }
}
