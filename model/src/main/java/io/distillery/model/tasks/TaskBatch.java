package io.distillery.model.tasks;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import io.distillery.model.llama.LlamaModel;
import io.distillery.model.tokenizer.TextTokenizer;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.List;

/**
 * Examples as one next-token-prediction batch. Each example is the sequence {@code <s> prompt
 * answer </s>} in the given tokenizer; rows are right-padded with its pad token (else eos) to the
 * longest. The model reads all but the last token of each row ({@link #inputs()}); position {@code
 * t} is scored on token {@code t+1}, and only answer and {@code </s>} targets count ({@link
 * #mask()}), so the prompt and the padding carry no loss. Right padding is safe under causal
 * attention: real positions never see pads.
 *
 * @param inputs {@code [batch][length]} token ids
 * @param targets {@code batch * length} next-token ids (pad where masked)
 * @param mask {@code batch * length}, 1 where the target is an answer or eos token
 * @param answerTokens number of ones in the mask
 * @param realTokens number of non-pad input tokens
 * @param segments {@code [batch][length]} example labels of a {@link #packed} batch (-1 on
 *     padding); null when each row holds one example
 */
public record TaskBatch(
    int[][] inputs,
    long[] targets,
    float[] mask,
    int answerTokens,
    int realTokens,
    int[][] segments) {

  /**
   * Row length of {@link #packed(LlamaModel, List, TextTokenizer)} in multiples of the longest
   * example.
   */
  public static final int ROW_OF_LONGEST = 4;

  public static TaskBatch of(List<TaskExample> examples, TextTokenizer tokenizer) {
    int pad = padId(tokenizer);
    int[][] sequences = new int[examples.size()][];
    int[] promptLengths = new int[examples.size()];
    int longest = encode(examples, tokenizer, sequences, promptLengths);
    int length = longest - 1;
    int[][] inputs = new int[sequences.length][length];
    long[] targets = new long[sequences.length * length];
    float[] mask = new float[sequences.length * length];
    int answerTokens = 0;
    int realTokens = 0;
    for (int b = 0; b < sequences.length; b++) {
      int[] sequence = sequences[b];
      for (int t = 0; t < length; t++) {
        inputs[b][t] = t < sequence.length ? sequence[t] : pad;
        if (t < sequence.length - 1) {
          realTokens++;
        }
        int target = t + 1 < sequence.length ? sequence[t + 1] : pad;
        targets[b * length + t] = target;
        if (t + 1 >= promptLengths[b] && t + 1 < sequence.length) {
          mask[b * length + t] = 1f;
          answerTokens++;
        }
      }
    }
    return new TaskBatch(inputs, targets, mask, answerTokens, realTokens, null);
  }

  /**
   * The same examples, targets and loss as {@link #of}, packed end to end into rows of {@code
   * rowLength} input positions (first fit, longest first) instead of one padded row each: a batch
   * of prompts of unequal length wastes fewer positions on padding. {@link #segments()} labels each
   * row's examples so that {@link #logits} lets every example attend only to itself; RoPE scores
   * depend only on the distance between positions, so each example gets the logits it would get
   * alone.
   *
   * @throws IllegalArgumentException if an example needs more than {@code rowLength} input
   *     positions
   */
  public static TaskBatch packed(
      List<TaskExample> examples, TextTokenizer tokenizer, int rowLength) {
    int[][] sequences = new int[examples.size()][];
    int[] promptLengths = new int[examples.size()];
    int longest = encode(examples, tokenizer, sequences, promptLengths);
    return pack(sequences, promptLengths, longest, rowLength, padId(tokenizer));
  }

  /**
   * {@link #packed(List, TextTokenizer, int)} for {@code model}: rows of {@value #ROW_OF_LONGEST}
   * times the longest example's input positions, but no longer than the model's trained context
   * ({@code max_position_embeddings}) unless one example alone is. In rows of twice the longest, no
   * third example fits beside two of more than a third of the row, and on the task suite packing
   * then saved no position; longer rows pack tighter, but attention grows with the row (eight times
   * the longest trained the teacher slower than four).
   */
  public static TaskBatch packed(
      LlamaModel model, List<TaskExample> examples, TextTokenizer tokenizer) {
    int[][] sequences = new int[examples.size()][];
    int[] promptLengths = new int[examples.size()];
    int longest = encode(examples, tokenizer, sequences, promptLengths);
    int positions = longest - 1;
    int rowLength =
        Math.max(
            positions,
            Math.min(
                Math.multiplyExact(ROW_OF_LONGEST, positions),
                model.config().maxPositionEmbeddings()));
    return pack(sequences, promptLengths, longest, rowLength, padId(tokenizer));
  }

  private static TaskBatch pack(
      int[][] sequences, int[] promptLengths, int longest, int rowLength, int pad) {
    if (longest - 1 > rowLength) {
      throw new IllegalArgumentException(
          "an example needs " + (longest - 1) + " input positions, rows have " + rowLength);
    }
    List<Integer> order = new ArrayList<>();
    for (int b = 0; b < sequences.length; b++) {
      order.add(b);
    }
    order.sort(Comparator.comparingInt((Integer b) -> sequences[b].length).reversed());
    List<List<Integer>> rows = new ArrayList<>();
    List<Integer> free = new ArrayList<>();
    for (int b : order) {
      int need = sequences[b].length - 1;
      int row = 0;
      while (row < rows.size() && free.get(row) < need) {
        row++;
      }
      if (row == rows.size()) {
        rows.add(new ArrayList<>());
        free.add(rowLength);
      }
      rows.get(row).add(b);
      free.set(row, free.get(row) - need);
    }
    int length = rowLength - free.stream().mapToInt(Integer::intValue).min().orElse(0);
    int[][] inputs = new int[rows.size()][length];
    int[][] segments = new int[rows.size()][length];
    long[] targets = new long[rows.size() * length];
    float[] mask = new float[rows.size() * length];
    int answerTokens = 0;
    int realTokens = 0;
    for (int r = 0; r < rows.size(); r++) {
      Arrays.fill(inputs[r], pad);
      Arrays.fill(segments[r], -1);
      Arrays.fill(targets, r * length, (r + 1) * length, pad);
      int offset = 0;
      for (int segment = 0; segment < rows.get(r).size(); segment++) {
        int b = rows.get(r).get(segment);
        int[] sequence = sequences[b];
        for (int t = 0; t < sequence.length - 1; t++) {
          int at = offset + t;
          inputs[r][at] = sequence[t];
          segments[r][at] = segment;
          targets[r * length + at] = sequence[t + 1];
          realTokens++;
          if (t + 1 >= promptLengths[b]) {
            mask[r * length + at] = 1f;
            answerTokens++;
          }
        }
        offset += sequence.length - 1;
      }
    }
    return new TaskBatch(inputs, targets, mask, answerTokens, realTokens, segments);
  }

  /**
   * {@code <s> prompt answer </s>} of each example into {@code sequences}; returns the longest
   * length.
   */
  private static int encode(
      List<TaskExample> examples, TextTokenizer tokenizer, int[][] sequences, int[] promptLengths) {
    if (examples.isEmpty()) {
      throw new IllegalArgumentException("a batch needs at least one example");
    }
    int longest = 0;
    for (int b = 0; b < sequences.length; b++) {
      TaskExample example = examples.get(b);
      int[] prompt = tokenizer.encode(example.prompt(), true, false);
      int[] answer = tokenizer.encode(example.answer(), false, true);
      int[] sequence = new int[prompt.length + answer.length];
      System.arraycopy(prompt, 0, sequence, 0, prompt.length);
      System.arraycopy(answer, 0, sequence, prompt.length, answer.length);
      sequences[b] = sequence;
      promptLengths[b] = prompt.length;
      longest = Math.max(longest, sequence.length);
    }
    return longest;
  }

  private static int padId(TextTokenizer tokenizer) {
    return tokenizer.padId().orElse(tokenizer.eosId().orElse(0));
  }

  /**
   * The model's logits on {@link #inputs()}; in a packed batch each example attends only to itself.
   */
  public NDArray logits(LlamaModel model, NDManager manager) {
    return segments == null
        ? model.forward(manager, inputs)
        : model.forward(manager, inputs, segments);
  }

  public int size() {
    return inputs.length;
  }

  public int length() {
    return inputs[0].length;
  }

  /**
   * Summed negative log-likelihood of the answer tokens, a scalar attached to {@code manager}.
   *
   * @param logits {@code [batch, length, vocab]} from the model on {@link #inputs()}
   */
  public NDArray answerNllSum(NDArray logits, NDManager manager) {
    int vocab = Math.toIntExact(logits.getShape().get(2));
    NDArray logProbs = logits.logSoftmax(-1);
    NDArray oneHot = manager.create(targets, new Shape(size(), length())).oneHot(vocab);
    NDArray weights = manager.create(mask, new Shape(size(), length()));
    return logProbs.mul(oneHot).sum(new int[] {-1}).mul(weights).sum().neg();
  }

  /** Mean negative log-likelihood per answer token (the training loss). */
  public NDArray answerNllMean(NDArray logits, NDManager manager) {
    return answerNllSum(logits, manager).div((float) Math.max(1, answerTokens));
  }
}
