package io.distillery.calibrator;

/**
 * The calibrator's params, validated here so that a bad value fails the job as non-retryable with
 * the param's name.
 *
 * @param samples how many calibration samples to run (a dataset with fewer uses all it has);
 *     default 128
 * @param seqLen tokens per sample at most (longer samples are truncated), in [8, 32768]; default
 *     256
 * @param source {@code tasks} (seeded prompts of the built-in task suite, the default, drawn with
 *     the task settings the run's model was trained on, {@code distillery-tasks.json} beside it,
 *     else the defaults) or {@code dataset} (an input artefact of format {@code dataset}: JSONL
 *     with {@code {"prompt","answer"}} or {@code {"text"}} lines, or a text file with one sample a
 *     line)
 * @param hessian whether to accumulate X^T X for every linear layer (GPTQ, SparseGPT); default true
 * @param bins |x| histogram bins for entropy calibration, at least 128; default 2048
 * @param seed seed of the task-suite samples; default 0
 */
public record CalibratorParams(
    Integer samples, Integer seqLen, String source, Boolean hessian, Integer bins, Long seed) {

  public static final String SOURCE_TASKS = "tasks";
  public static final String SOURCE_DATASET = "dataset";

  public CalibratorParams {
    samples = samples == null ? 128 : samples;
    seqLen = seqLen == null ? 256 : seqLen;
    source = source == null ? SOURCE_TASKS : source;
    hessian = hessian == null || hessian;
    bins = bins == null ? 2048 : bins;
    seed = seed == null ? 0L : seed;
    if (samples <= 0) {
      throw new IllegalArgumentException("samples must be > 0, got " + samples);
    }
    if (seqLen < 8 || seqLen > 32768) {
      throw new IllegalArgumentException("seqLen must be in [8, 32768], got " + seqLen);
    }
    if (!source.equals(SOURCE_TASKS) && !source.equals(SOURCE_DATASET)) {
      throw new IllegalArgumentException(
          "source must be '"
              + SOURCE_TASKS
              + "' or '"
              + SOURCE_DATASET
              + "', got '"
              + source
              + "'");
    }
    if (bins < 128) {
      throw new IllegalArgumentException(
          "bins must be >= 128 (entropy calibration merges into 128 levels), got " + bins);
    }
  }

  /** All defaults. */
  public static CalibratorParams defaults() {
    return new CalibratorParams(null, null, null, null, null, null);
  }
}
