package io.distillery.model.llama;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.within;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.index.NDIndex;
import org.junit.jupiter.api.Test;

class ScoredGenerationTest {

  @Test
  void shouldGenerateTheSameTokensAsGenerateWithEachTokensLogProbabilityUnderTheFullForward() {
    try (LlamaModel model = LlamaModel.random(TinyModels.tiny(false), 3)) {
      int[] prompt = {1, 5, 9, 2};
      int[] expected = model.generate(prompt, 6, SamplingParams.greedy(), -1);

      ScoredGeneration.Result r =
          ScoredGeneration.generate(model, prompt, 6, SamplingParams.greedy(), -1, Long.MAX_VALUE);

      assertThat(r.tokens()).containsExactly(expected);
      assertThat(r.stopped()).isFalse();
      assertThat(r.timedOut()).isFalse();
      // reference: log-softmax of an uncached forward over prompt + generated prefix
      int[] all = new int[prompt.length + expected.length];
      System.arraycopy(prompt, 0, all, 0, prompt.length);
      System.arraycopy(expected, 0, all, prompt.length, expected.length);
      try (NDManager m = model.manager().newSubManager()) {
        NDArray logits = model.forward(m, new int[][] {all});
        double sum = 0;
        for (int i = 0; i < expected.length; i++) {
          float[] row = logits.get(new NDIndex(0, prompt.length - 1 + i)).toFloatArray();
          double reference = ScoredGeneration.logSoftmaxAt(row, expected[i]);
          assertThat(r.logProbs()[i]).isCloseTo(reference, within(1e-4));
          assertThat(r.logProbs()[i]).isNegative();
          sum += reference;
        }
        assertThat(r.meanLogProb()).isCloseTo(sum / expected.length, within(1e-4));
      }
    }
  }

  @Test
  void shouldStopOnTheStopTokenAndIncludeIt() {
    try (LlamaModel model = LlamaModel.random(TinyModels.tiny(false), 4)) {
      int[] prompt = {3, 4};
      int first = model.generate(prompt, 1, SamplingParams.greedy(), -1)[0];

      ScoredGeneration.Result r =
          ScoredGeneration.generate(
              model, prompt, 8, SamplingParams.greedy(), first, Long.MAX_VALUE);

      assertThat(r.tokens()).containsExactly(first);
      assertThat(r.stopped()).isTrue();
    }
  }

  @Test
  void shouldStopAtTheDeadlineAndSaySo() {
    try (LlamaModel model = LlamaModel.random(TinyModels.tiny(false), 5)) {
      ScoredGeneration.Result r =
          ScoredGeneration.generate(
              model, new int[] {1}, 8, SamplingParams.greedy(), -1, System.nanoTime() - 1);

      assertThat(r.tokens()).isEmpty();
      assertThat(r.timedOut()).isTrue();
      assertThat(r.meanLogProb()).isZero();
    }
  }

  @Test
  void shouldComputeLogSoftmaxByHand() {
    // log(e^0 / (e^0 + e^ln3)) = log(1/4)
    assertThat(ScoredGeneration.logSoftmaxAt(new float[] {0f, (float) Math.log(3)}, 0))
        .isCloseTo(Math.log(0.25), within(1e-6));
  }
}
