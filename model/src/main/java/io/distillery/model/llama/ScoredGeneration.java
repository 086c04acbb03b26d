package io.distillery.model.llama;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.index.NDIndex;
import java.util.Arrays;
import java.util.Objects;

/**
 * KV-cached generation like {@link LlamaModel#generate} that also reports, per generated token, its
 * log-probability under the model's own distribution (softmax of the raw logits, temperature 1,
 * whatever the sampling parameters), and that stops at a deadline. Serving uses the mean of these
 * as the answer's confidence; a generation cut by the deadline says so.
 */
public final class ScoredGeneration {

  private static final NDIndex LAST_POSITION = new NDIndex("0, -1, :");

  /**
   * @param tokens the new tokens (the stop token included when it was emitted)
   * @param logProbs {@code log p(tokens[i] | prefix)} under the model, one per token
   * @param stopped whether generation ended on the stop token
   * @param timedOut whether generation ended because the deadline passed
   */
  public record Result(int[] tokens, double[] logProbs, boolean stopped, boolean timedOut) {

    /** Mean token log-probability; 0 for no tokens. */
    public double meanLogProb() {
      return logProbs.length == 0 ? 0 : Arrays.stream(logProbs).sum() / logProbs.length;
    }
  }

  private ScoredGeneration() {}

  /**
   * Generates up to {@code maxNewTokens} tokens after {@code prompt}.
   *
   * @param stopTokenId generation stops after emitting this id; negative for none
   * @param deadlineNanos a {@link System#nanoTime()} value after which no further token is started;
   *     {@link Long#MAX_VALUE} for none
   */
  public static Result generate(
      LlamaModel model,
      int[] prompt,
      int maxNewTokens,
      SamplingParams params,
      int stopTokenId,
      long deadlineNanos) {
    if (prompt.length == 0) {
      throw new IllegalArgumentException("prompt must not be empty");
    }
    if (maxNewTokens < 0) {
      throw new IllegalArgumentException("maxNewTokens must not be negative, got " + maxNewTokens);
    }
    TokenSampler sampler = new TokenSampler(Objects.requireNonNull(params, "params"));
    int[] tokens = new int[maxNewTokens];
    double[] logProbs = new double[maxNewTokens];
    int count = 0;
    boolean stopped = false;
    boolean timedOut = false;
    try (NDManager call = model.manager().newSubManager();
        KvCache cache = model.newKvCache()) {
      int[] input = prompt;
      while (count < maxNewTokens) {
        if (System.nanoTime() - deadlineNanos > 0) {
          timedOut = true;
          break;
        }
        float[] logits = lastLogits(model, call, input, cache);
        int next = sampler.next(logits);
        tokens[count] = next;
        logProbs[count] = logSoftmaxAt(logits, next);
        count++;
        if (next == stopTokenId) {
          stopped = true;
          break;
        }
        input = new int[] {next};
      }
    }
    return new Result(
        Arrays.copyOf(tokens, count), Arrays.copyOf(logProbs, count), stopped, timedOut);
  }

  private static float[] lastLogits(LlamaModel model, NDManager call, int[] tokens, KvCache cache) {
    try (NDManager step = call.newSubManager()) {
      NDArray logits = model.forward(step, new int[][] {tokens}, cache);
      return logits.get(LAST_POSITION).toFloatArray();
    }
  }

  /** {@code log softmax(logits)[index]}, computed stably in double precision. */
  static double logSoftmaxAt(float[] logits, int index) {
    double max = Double.NEGATIVE_INFINITY;
    for (float logit : logits) {
      max = Math.max(max, logit);
    }
    double sum = 0;
    for (float logit : logits) {
      sum += Math.exp(logit - max);
    }
    return logits[index] - max - Math.log(sum);
  }
}
