package io.distillery.evaluator.measure;

import java.util.Arrays;

/**
 * Timings of one model at batch 1: prefill = one forward pass over a whole prompt into an empty KV
 * cache; decode = one forward pass of a single token against the cache. Percentiles by nearest
 * rank.
 *
 * @param prefillP50Ms median prefill time per prompt
 * @param prefillP99Ms 99th percentile prefill time per prompt
 * @param decodeP50Ms median decode time per token
 * @param decodeP99Ms 99th percentile decode time per token
 * @param prefillTokensPerSecond prompt tokens / total prefill time
 * @param decodeTokensPerSecond decoded tokens / total decode time
 */
public record Latency(
    double prefillP50Ms,
    double prefillP99Ms,
    double decodeP50Ms,
    double decodeP99Ms,
    double prefillTokensPerSecond,
    double decodeTokensPerSecond) {

  /** Not measured (a streamed evaluation: the model does not fit in memory to be timed). */
  public static final Latency NOT_MEASURED =
      new Latency(Double.NaN, Double.NaN, Double.NaN, Double.NaN, Double.NaN, Double.NaN);

  /** The nearest-rank percentile {@code p} (0, 100] of {@code samples}. */
  public static double percentile(double[] samples, double p) {
    if (samples.length == 0) {
      return Double.NaN;
    }
    double[] sorted = samples.clone();
    Arrays.sort(sorted);
    int rank = (int) Math.ceil(p / 100.0 * sorted.length);
    return sorted[Math.max(0, Math.min(sorted.length - 1, rank - 1))];
  }
}
