package io.distillery.evaluator.measure;

import io.distillery.platform.model.tokenizer.TextTokenizer;
import io.distillery.platform.tasks.TaskExample;
import java.util.List;

/**
 * Eval examples as one teacher-forced batch for any {@link TextTokenizer}: each row is {@code <s> prompt answer </s>}
 * right-padded to the longest; the model reads all but the last token and position {@code t} is scored on token
 * {@code t+1} only where that target is an answer or eos token. The same layout as the platform's {@code TaskBatch}
 * (which is tied to the byte tokenizer), so perplexity here equals {@code tasks.Perplexity} on byte-level models.
 *
 * @param inputs {@code [batch][length]} token ids
 * @param targets {@code batch * length} next-token ids
 * @param mask {@code batch * length}, true where the target is an answer or eos token
 * @param answerTokens number of true entries in the mask
 */
record AnswerBatch(int[][] inputs, long[] targets, boolean[] mask, int answerTokens) {

  static AnswerBatch of(List<TaskExample> examples, TextTokenizer tokenizer) {
    if (examples.isEmpty()) {
      throw new IllegalArgumentException("a batch needs at least one example");
    }
    int pad = tokenizer.padId().orElse(tokenizer.eosId().orElse(0));
    int[][] sequences = new int[examples.size()][];
    int[] promptLengths = new int[examples.size()];
    int longest = 0;
    for (int b = 0; b < sequences.length; b++) {
      int[] prompt = tokenizer.encode(examples.get(b).prompt(), true, false);
      int[] answer = tokenizer.encode(examples.get(b).answer(), false, true);
      int[] sequence = new int[prompt.length + answer.length];
      System.arraycopy(prompt, 0, sequence, 0, prompt.length);
      System.arraycopy(answer, 0, sequence, prompt.length, answer.length);
      sequences[b] = sequence;
      promptLengths[b] = prompt.length;
      longest = Math.max(longest, sequence.length);
    }
    int length = Math.max(1, longest - 1);
    int[][] inputs = new int[sequences.length][length];
    long[] targets = new long[sequences.length * length];
    boolean[] mask = new boolean[sequences.length * length];
    int answerTokens = 0;
    for (int b = 0; b < sequences.length; b++) {
      int[] sequence = sequences[b];
      for (int t = 0; t < length; t++) {
        inputs[b][t] = t < sequence.length ? sequence[t] : pad;
        targets[b * length + t] = t + 1 < sequence.length ? sequence[t + 1] : pad;
        if (t + 1 >= promptLengths[b] && t + 1 < sequence.length) {
          mask[b * length + t] = true;
          answerTokens++;
        }
      }
    }
    return new AnswerBatch(inputs, targets, mask, answerTokens);
  }

  int size() {
    return inputs.length;
  }

  int length() {
    return inputs[0].length;
  }
}
