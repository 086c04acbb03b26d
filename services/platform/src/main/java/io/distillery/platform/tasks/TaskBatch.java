package io.distillery.platform.tasks;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import io.distillery.platform.model.tokenizer.TextTokenizer;
import java.util.List;

/**
 * Examples as one next-token-prediction batch. Each example is the sequence {@code <s> prompt answer
 * </s>} in the given tokenizer; rows are right-padded with its pad token (else eos) to the longest. The
 * model reads all but the last token of each row ({@link #inputs()}); position {@code t} is scored on
 * token {@code t+1}, and only answer and {@code </s>} targets count ({@link #mask()}), so the prompt
 * and the padding carry no loss. Right padding is safe under causal attention: real positions never see pads.
 *
 * @param inputs {@code [batch][length]} token ids
 * @param targets {@code batch * length} next-token ids (pad where masked)
 * @param mask {@code batch * length}, 1 where the target is an answer or eos token
 * @param answerTokens number of ones in the mask
 * @param realTokens number of non-pad input tokens
 */
public record TaskBatch(int[][] inputs, long[] targets, float[] mask, int answerTokens, int realTokens) {

    public static TaskBatch of(List<TaskExample> examples, TextTokenizer tokenizer) {
        if (examples.isEmpty()) {
            throw new IllegalArgumentException("a batch needs at least one example");
        }
        int pad = tokenizer.padId().orElse(tokenizer.eosId().orElse(0));
        int[][] sequences = new int[examples.size()][];
        int[] promptLengths = new int[examples.size()];
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
        return new TaskBatch(inputs, targets, mask, answerTokens, realTokens);
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
