package io.distillery.model.tasks;

import io.distillery.model.llama.LlamaModel;
import io.distillery.model.llama.SamplingParams;
import io.distillery.model.tokenizer.TextTokenizer;
import java.util.Arrays;
import java.util.List;

/**
 * Exact-match accuracy: the model generates greedily after {@code <s> prompt} until {@code </s>}
 * (or {@code maxNewTokens}); an example counts when the text before {@code </s>} equals the answer
 * exactly. Generation that stops at the limit without {@code </s>} counts only when all of it
 * equals the answer.
 */
public final class ExactMatch {

  private ExactMatch() {}

  /** Fraction of {@code examples} answered exactly; 0 for none. */
  public static double score(
      LlamaModel model, TextTokenizer tokenizer, List<TaskExample> examples, int maxNewTokens) {
    if (examples.isEmpty()) {
      return 0;
    }
    int correct = 0;
    for (TaskExample example : examples) {
      if (answer(model, tokenizer, example.prompt(), maxNewTokens).equals(example.answer())) {
        correct++;
      }
    }
    return (double) correct / examples.size();
  }

  /**
   * The model's greedy answer to {@code prompt}, up to its end-of-sequence token (not included).
   */
  public static String answer(
      LlamaModel model, TextTokenizer tokenizer, String prompt, int maxNewTokens) {
    int eos = tokenizer.eosId().orElse(-1);
    int[] generated =
        model.generate(
            tokenizer.encode(prompt, true, false), maxNewTokens, SamplingParams.greedy(), eos);
    int end = generated.length;
    for (int i = 0; i < generated.length; i++) {
      if (generated[i] == eos) {
        end = i;
        break;
      }
    }
    return tokenizer.decode(Arrays.copyOf(generated, end));
  }
}
