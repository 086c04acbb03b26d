package io.distillery.model.llama;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.within;

import io.distillery.model.config.Architecture;
import io.distillery.model.config.LlamaConfig;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class BatchedGenerationTest {

  @TempDir Path dir;

  /** Prompts of different lengths, admitted at different steps, some stopping early. */
  private static final int[][] PROMPTS = {
    {1, 5, 9, 2}, {7}, {3, 3, 8, 12, 40, 2, 9, 11, 5}, {60, 2}, {4, 4, 4, 4, 4, 4}, {33, 1, 17}
  };

  private static final int[] MAX_TOKENS = {6, 9, 3, 12, 1, 7};

  @Test
  void shouldGiveEachSequenceTheTokensItGetsAloneWhenSequencesJoinAndLeaveAtDifferentSteps()
      throws Exception {
    LlamaConfig config = TinyModels.tiny(false);
    try (LlamaModel model =
        LlamaModel.load(
            TinyModels.writeRandomCheckpoint(
                Files.createDirectories(dir.resolve("m")), config, 11))) {
      assertBatchedMatchesAlone(model, -1);
    }
  }

  @Test
  void shouldMatchAloneWithASlidingWindowAndAStopToken() throws Exception {
    LlamaConfig config =
        TinyModels.tiny().architecture(Architecture.MISTRAL).slidingWindow(4).build();
    try (LlamaModel model =
        LlamaModel.load(
            TinyModels.writeRandomCheckpoint(
                Files.createDirectories(dir.resolve("w")), config, 12))) {
      // the stop token: one that some sequence emits, so that it ends before its budget
      int stop =
          ScoredGeneration.generate(
                  model, PROMPTS[0], 6, SamplingParams.greedy(), -1, Long.MAX_VALUE)
              .tokens()[2];
      assertBatchedMatchesAlone(model, stop);
    }
  }

  private static void assertBatchedMatchesAlone(LlamaModel model, int stop) {
    Map<Integer, ScoredGeneration.Result> alone = new HashMap<>();
    for (int i = 0; i < PROMPTS.length; i++) {
      alone.put(
          i,
          ScoredGeneration.generate(
              model, PROMPTS[i], MAX_TOKENS[i], SamplingParams.greedy(), stop, Long.MAX_VALUE));
    }
    Map<Integer, BatchedGeneration.Sequence> batched = new HashMap<>();
    // which prompts join at which step: several at once (one padded prefill), then one, then two,
    // so that rows join mid-way and leave at different steps
    Map<Integer, List<Integer>> joins =
        Map.of(0, List.of(0, 1, 2), 2, List.of(3), 3, List.of(4, 5));
    try (BatchedGeneration batch = new BatchedGeneration(model)) {
      for (int step = 0; step < 4 || batch.active() > 0; step++) {
        List<Integer> joining = joins.getOrDefault(step, List.of());
        List<BatchedGeneration.Request> requests = new ArrayList<>();
        for (int i : joining) {
          requests.add(
              new BatchedGeneration.Request(
                  PROMPTS[i], MAX_TOKENS[i], SamplingParams.greedy(), stop, Long.MAX_VALUE));
        }
        if (!requests.isEmpty()) {
          List<BatchedGeneration.Sequence> admitted = batch.admit(requests);
          for (int k = 0; k < joining.size(); k++) {
            batched.put(joining.get(k), admitted.get(k));
          }
        }
        batch.step();
      }
    }
    for (int i = 0; i < PROMPTS.length; i++) {
      ScoredGeneration.Result want = alone.get(i);
      ScoredGeneration.Result got = batched.get(i).result();
      assertThat(got.tokens()).as("sequence %d", i).containsExactly(want.tokens());
      assertThat(got.stopped()).isEqualTo(want.stopped());
      assertThat(got.timedOut()).isFalse();
      for (int t = 0; t < want.logProbs().length; t++) {
        assertThat(got.logProbs()[t]).isCloseTo(want.logProbs()[t], within(1e-4));
      }
    }
  }

  @Test
  void shouldEndASequencePastItsDeadlineWithoutTouchingTheOthers() throws Exception {
    LlamaConfig config = TinyModels.tiny(false);
    try (LlamaModel model =
            LlamaModel.load(
                TinyModels.writeRandomCheckpoint(
                    Files.createDirectories(dir.resolve("d")), config, 13));
        BatchedGeneration batch = new BatchedGeneration(model)) {
      int[] want =
          ScoredGeneration.generate(
                  model, PROMPTS[0], 5, SamplingParams.greedy(), -1, Long.MAX_VALUE)
              .tokens();
      BatchedGeneration.Sequence onTime =
          batch.admit(PROMPTS[0], 5, SamplingParams.greedy(), -1, Long.MAX_VALUE);
      BatchedGeneration.Sequence late =
          batch.admit(PROMPTS[2], 5, SamplingParams.greedy(), -1, System.nanoTime() + 300_000_000L);
      assertThat(late.done()).isFalse();
      Thread.sleep(400);
      List<BatchedGeneration.Sequence> ended = batch.step();
      assertThat(ended).containsExactly(late);
      assertThat(late.result().timedOut()).isTrue();
      assertThat(late.result().tokens()).hasSize(1);
      while (!onTime.done()) {
        batch.step();
      }
      assertThat(onTime.result().tokens()).containsExactly(want);
      assertThat(batch.active()).isZero();
    }
  }

  @Test
  void shouldAnswerAtOnceWhenNoTokenIsAskedOrTheDeadlineHasPassed() {
    try (LlamaModel model = LlamaModel.random(TinyModels.tiny(false), 5);
        BatchedGeneration batch = new BatchedGeneration(model)) {
      BatchedGeneration.Sequence none =
          batch.admit(new int[] {1}, 0, SamplingParams.greedy(), -1, Long.MAX_VALUE);
      BatchedGeneration.Sequence late =
          batch.admit(new int[] {1}, 4, SamplingParams.greedy(), -1, System.nanoTime() - 1);

      assertThat(none.done()).isTrue();
      assertThat(none.result().tokens()).isEmpty();
      assertThat(late.result().timedOut()).isTrue();
      assertThat(late.result().tokens()).isEmpty();
      assertThat(batch.active()).isZero();
    }
  }
}
