package io.distillery.model.tasks;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import io.distillery.model.config.LlamaConfig;
import io.distillery.model.llama.LlamaModel;
import io.distillery.model.tokenizer.ByteTokenizer;
import java.util.ArrayList;
import java.util.List;
import org.assertj.core.data.Offset;
import org.junit.jupiter.api.Test;

class TaskBatchTest {

  private static final int PAD = ByteTokenizer.PAD_ID;
  private static final int BOS = ByteTokenizer.BOS_ID;
  private static final int EOS = ByteTokenizer.EOS_ID;

  @Test
  void shouldMaskThePromptAndPaddingAndScoreAnswerPlusEos() {
    TaskBatch batch =
        TaskBatch.of(
            List.of(new TaskExample("t", "ab=", "c"), new TaskExample("t", "a=", "b")),
            ByteTokenizer.instance());
    // row 0: <s> a b = c </s>  (6 tokens, inputs 5); row 1: <s> a = b </s> <pad>
    assertThat(batch.inputs())
        .isDeepEqualTo(new int[][] {{BOS, 'a', 'b', '=', 'c'}, {BOS, 'a', '=', 'b', EOS}});
    assertThat(batch.targets()).containsExactly('a', 'b', '=', 'c', EOS, 'a', '=', 'b', EOS, PAD);
    assertThat(batch.mask()).containsExactly(0, 0, 0, 1, 1, 0, 0, 1, 1, 0);
    assertThat(batch.answerTokens()).isEqualTo(4);
    assertThat(batch.realTokens()).isEqualTo(9);
  }

  @Test
  void shouldAverageNllOverAnswerTokensOnly() {
    TaskBatch batch =
        TaskBatch.of(List.of(new TaskExample("t", "a=", "b")), ByteTokenizer.instance());
    int vocab = ByteTokenizer.VOCAB_SIZE;
    // inputs <s> a = b; uniform logits except a sure eos at position 3 (after 'b')
    float[] logits = new float[4 * vocab];
    logits[3 * vocab + EOS] = 100f;
    try (NDManager manager = Engine.getEngine("PyTorch").newBaseManager()) {
      NDArray array = manager.create(logits, new Shape(1, 4, vocab));
      // scored: position 2 ('=' -> 'b', uniform: log 259) and position 3 ('b' -> eos, ~0)
      assertThat(batch.answerNllSum(array, manager).getFloat())
          .isCloseTo((float) Math.log(vocab), Offset.offset(1e-3f));
      assertThat(batch.answerNllMean(array, manager).getFloat())
          .isCloseTo((float) Math.log(vocab) / 2, Offset.offset(1e-3f));
    }
  }

  @Test
  void shouldPackExamplesEndToEndWithTheSameTargets() {
    TaskBatch packed =
        TaskBatch.packed(
            List.of(
                new TaskExample("t", "ab=", "c"),
                new TaskExample("t", "a=", "b"),
                new TaskExample("t", "abcdef=", "g")),
            ByteTokenizer.instance(),
            10);
    // longest first: row 0 <s>abcdef=g (9 inputs); row 1 <s>ab=c (5) then <s>a=b (4), and a row of
    // 9 is enough
    assertThat(packed.inputs())
        .isDeepEqualTo(
            new int[][] {
              {BOS, 'a', 'b', 'c', 'd', 'e', 'f', '=', 'g'},
              {BOS, 'a', 'b', '=', 'c', BOS, 'a', '=', 'b'}
            });
    assertThat(packed.segments())
        .isDeepEqualTo(
            new int[][] {
              {0, 0, 0, 0, 0, 0, 0, 0, 0},
              {0, 0, 0, 0, 0, 1, 1, 1, 1}
            });
    assertThat(packed.targets())
        .containsExactly(
            'a', 'b', 'c', 'd', 'e', 'f', '=', 'g', EOS, 'a', 'b', '=', 'c', EOS, 'a', '=', 'b',
            EOS);
    assertThat(packed.mask()).containsExactly(0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 1, 1, 0, 0, 1, 1);
    assertThat(packed.answerTokens()).isEqualTo(6);
    assertThat(packed.realTokens()).isEqualTo(18);
    TaskBatch padded =
        TaskBatch.packed(
            List.of(new TaskExample("t", "ab=", "c"), new TaskExample("t", "a=", "b")),
            ByteTokenizer.instance(),
            6);
    // 5 and 4 inputs do not share a row of 6: the shorter row is padded, its pads in no example's
    // segment
    assertThat(padded.inputs())
        .isDeepEqualTo(new int[][] {{BOS, 'a', 'b', '=', 'c'}, {BOS, 'a', '=', 'b', PAD}});
    assertThat(padded.segments()).isDeepEqualTo(new int[][] {{0, 0, 0, 0, 0}, {0, 0, 0, 0, -1}});
    assertThat(padded.mask()).containsExactly(0, 0, 0, 1, 1, 0, 0, 1, 1, 0);
    assertThatThrownBy(
            () ->
                TaskBatch.packed(
                    List.of(new TaskExample("t", "abcdef=", "g")), ByteTokenizer.instance(), 8))
        .hasMessageContaining("needs 9 input positions");
  }

  @Test
  void shouldGiveThePackedBatchTheLossOfTheUnpackedOne() {
    TaskGenerator generator = new TaskGenerator(TaskSettings.defaults(), 11);
    List<TaskExample> examples = new ArrayList<>();
    for (int i = 0; i < 40; i++) {
      examples.add(generator.next(TaskKind.values()[i % TaskKind.values().length]));
    }
    TaskBatch plain = TaskBatch.of(examples, ByteTokenizer.instance());
    TaskBatch packed = TaskBatch.packed(examples, ByteTokenizer.instance(), 4 * plain.length());
    assertThat(packed.answerTokens()).isEqualTo(plain.answerTokens());
    assertThat(packed.realTokens()).isEqualTo(plain.realTokens());
    int plainPositions = plain.size() * plain.length();
    int packedPositions = packed.size() * packed.length();
    assertThat(packedPositions).isLessThan(plainPositions);
    assertThat(packedPositions - packed.realTokens())
        .as(
            "padding: packed %d of %d, plain %d of %d",
            packedPositions - packed.realTokens(),
            packedPositions,
            plainPositions - plain.realTokens(),
            plainPositions)
        .isLessThanOrEqualTo((plainPositions - plain.realTokens()) / 2);
    try (LlamaModel model = LlamaModel.random(tiny(128), 5);
        NDManager scope = model.manager().newSubManager()) {
      float a = plain.answerNllSum(plain.logits(model, scope), scope).getFloat();
      float b = packed.answerNllSum(packed.logits(model, scope), scope).getFloat();
      assertThat(b).isCloseTo(a, Offset.offset(1e-4f * Math.abs(a)));
      assertThat(a).isGreaterThan(10f); // a random model is unsure: the sums are not trivially zero
    }
  }

  @Test
  void shouldPackRowsOfFourTimesTheLongestButNoLongerThanTheModelsContext() {
    List<TaskExample> examples =
        List.of(
            new TaskExample("t", "abcdef=", "g"),
            new TaskExample("t", "a=", "b"),
            new TaskExample("t", "ab=", "c"));
    // the longest, <s> a b c d e f = g </s>, needs 9 input positions
    try (LlamaModel wide = LlamaModel.random(tiny(128), 1);
        LlamaModel narrow = LlamaModel.random(tiny(12), 1);
        LlamaModel tooNarrow = LlamaModel.random(tiny(6), 1)) {
      TaskBatch roomy = TaskBatch.packed(wide, examples, ByteTokenizer.instance());
      assertThat(roomy.size()).isEqualTo(1);
      assertThat(roomy.length()).isEqualTo(9 + 4 + 5); // all three in one row of up to 36
      TaskBatch capped = TaskBatch.packed(narrow, examples, ByteTokenizer.instance());
      assertThat(capped.size())
          .isEqualTo(2); // rows of 12: the longest alone, then the two short ones
      assertThat(capped.length()).isLessThanOrEqualTo(12);
      TaskBatch alone = TaskBatch.packed(tooNarrow, examples, ByteTokenizer.instance());
      assertThat(alone.length())
          .isEqualTo(9); // an example longer than the context still gets a row
    }
  }

  @Test
  void shouldGiveThePackedPerplexityOfThePaddedBatches() {
    TaskGenerator generator = new TaskGenerator(TaskSettings.defaults(), 3);
    List<TaskExample> examples = new ArrayList<>();
    for (int i = 0; i < 70; i++) { // a full batch of 64 and a partial one
      examples.add(generator.next(TaskKind.values()[i % TaskKind.values().length]));
    }
    try (LlamaModel model = LlamaModel.random(tiny(128), 9);
        NDManager scope = model.manager().newSubManager()) {
      double nll = 0;
      long tokens = 0;
      for (List<TaskExample> part : List.of(examples.subList(0, 64), examples.subList(64, 70))) {
        TaskBatch padded = TaskBatch.of(part, ByteTokenizer.instance());
        nll += padded.answerNllSum(padded.logits(model, scope), scope).getFloat();
        tokens += padded.answerTokens();
      }
      Perplexity.Result result = Perplexity.evaluate(model, ByteTokenizer.instance(), examples);
      assertThat(result.tokens()).isEqualTo(tokens);
      assertThat(result.meanNll()).isCloseTo(nll / tokens, Offset.offset(1e-5 * nll / tokens));
      assertThat(result.meanNll()).isGreaterThan(1.0); // a random model: not trivially zero
    }
  }

  private static LlamaConfig tiny(int positions) {
    return LlamaConfig.builder()
        .vocabSize(ByteTokenizer.VOCAB_SIZE)
        .hiddenSize(32)
        .intermediateSize(64)
        .numHiddenLayers(2)
        .numAttentionHeads(4)
        .numKeyValueHeads(2)
        .maxPositionEmbeddings(positions)
        .rmsNormEps(1e-5)
        .tieWordEmbeddings(false)
        .build();
  }
}
