package io.distillery.model.tasks;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import io.distillery.model.llama.LlamaModel;
import io.distillery.model.tokenizer.TextTokenizer;
import java.util.List;

/**
 * Perplexity of the answers given the prompts: {@code exp} of the mean negative log-likelihood over
 * every answer token and the closing {@code </s>}, prompts conditioned on but not scored. Batches
 * of 64 examples are packed ({@link TaskBatch#packed(LlamaModel, List, TextTokenizer)}): each
 * example is scored as if alone, with less padding than one row each.
 */
public final class Perplexity {

  private static final int BATCH = 64;

  /** Mean NLL per answer token (nats), its exponent, and the number of tokens scored. */
  public record Result(double meanNll, double perplexity, long tokens) {}

  private Perplexity() {}

  public static Result evaluate(
      LlamaModel model, TextTokenizer tokenizer, List<TaskExample> examples) {
    if (examples.isEmpty()) {
      throw new IllegalArgumentException("perplexity needs at least one example");
    }
    double nll = 0;
    long tokens = 0;
    for (int from = 0; from < examples.size(); from += BATCH) {
      TaskBatch batch =
          TaskBatch.packed(
              model, examples.subList(from, Math.min(examples.size(), from + BATCH)), tokenizer);
      try (NDManager scope = model.manager().newSubManager()) {
        NDArray logits = batch.logits(model, scope);
        nll += batch.answerNllSum(logits, scope).getFloat();
        tokens += batch.answerTokens();
      }
    }
    double mean = nll / tokens;
    return new Result(mean, Math.exp(mean), tokens);
  }
}
