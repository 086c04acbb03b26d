package io.distillery.platform.tasks;

import static org.assertj.core.api.Assertions.assertThat;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import io.distillery.platform.model.tokenizer.ByteTokenizer;
import java.util.List;
import org.assertj.core.data.Offset;
import org.junit.jupiter.api.Test;

class TaskBatchTest {

    private static final int PAD = ByteTokenizer.PAD_ID;
    private static final int BOS = ByteTokenizer.BOS_ID;
    private static final int EOS = ByteTokenizer.EOS_ID;

    @Test
    void shouldMaskThePromptAndPaddingAndScoreAnswerPlusEos() {
        TaskBatch batch = TaskBatch.of(List.of(new TaskExample("t", "ab=", "c"), new TaskExample("t", "a=", "b")),
                ByteTokenizer.instance());
        // row 0: <s> a b = c </s>  (6 tokens, inputs 5); row 1: <s> a = b </s> <pad>
        assertThat(batch.inputs()).isDeepEqualTo(new int[][] {{BOS, 'a', 'b', '=', 'c'}, {BOS, 'a', '=', 'b', EOS}});
        assertThat(batch.targets()).containsExactly('a', 'b', '=', 'c', EOS, 'a', '=', 'b', EOS, PAD);
        assertThat(batch.mask()).containsExactly(0, 0, 0, 1, 1, 0, 0, 1, 1, 0);
        assertThat(batch.answerTokens()).isEqualTo(4);
        assertThat(batch.realTokens()).isEqualTo(9);
    }

    @Test
    void shouldAverageNllOverAnswerTokensOnly() {
        TaskBatch batch = TaskBatch.of(List.of(new TaskExample("t", "a=", "b")), ByteTokenizer.instance());
        int vocab = ByteTokenizer.VOCAB_SIZE;
        // inputs <s> a = b; uniform logits except a sure eos at position 3 (after 'b')
        float[] logits = new float[4 * vocab];
        logits[3 * vocab + EOS] = 100f;
        try (NDManager manager = Engine.getEngine("PyTorch").newBaseManager()) {
            NDArray array = manager.create(logits, new Shape(1, 4, vocab));
            // scored: position 2 ('=' -> 'b', uniform: log 259) and position 3 ('b' -> eos, ~0)
            assertThat(batch.answerNllSum(array, manager).getFloat()).isCloseTo((float) Math.log(vocab),
                    Offset.offset(1e-3f));
            assertThat(batch.answerNllMean(array, manager).getFloat()).isCloseTo((float) Math.log(vocab) / 2,
                    Offset.offset(1e-3f));
        }
    }
}
