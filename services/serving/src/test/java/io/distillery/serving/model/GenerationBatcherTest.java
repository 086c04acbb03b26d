package io.distillery.serving.model;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.assertj.core.api.Assertions.within;

import io.distillery.model.config.LlamaConfig;
import io.distillery.model.llama.LlamaModel;
import io.distillery.model.llama.SamplingParams;
import io.distillery.model.llama.ScoredGeneration;
import io.distillery.model.safetensors.DType;
import io.distillery.model.tokenizer.ByteTokenizer;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Concurrent requests decoded together answer as each would be answered alone. */
class GenerationBatcherTest {

  @TempDir Path dir;

  private static final List<String> PROMPTS =
      List.of(
          "copy:abc=",
          "5+5=",
          "reverse:hello world=",
          "x",
          "sort:dcba=",
          "a much longer prompt than the others, to pad the rest=",
          "upper:abc=",
          "12*3=",
          "count:aaa=",
          "q");

  private ServedModel load() throws Exception {
    LlamaConfig cfg =
        LlamaConfig.builder()
            .vocabSize(ByteTokenizer.VOCAB_SIZE)
            .hiddenSize(64)
            .intermediateSize(128)
            .numHiddenLayers(2)
            .numAttentionHeads(4)
            .numKeyValueHeads(2)
            .maxPositionEmbeddings(256)
            .build();
    try (LlamaModel m = LlamaModel.random(cfg, 21)) {
      m.save(dir, DType.F32);
    }
    ByteTokenizer.instance().save(dir);
    return ServedModel.load(dir, "0123456789abcdef", dir.toUri().toString());
  }

  @Test
  void shouldAnswerConcurrentRequestsAsEachIsAnsweredAlone() throws Exception {
    ServedModel served = load();
    try {
      List<ScoredGeneration.Result> alone = new ArrayList<>();
      for (int i = 0; i < PROMPTS.size(); i++) {
        alone.add(
            ScoredGeneration.generate(
                served.model(),
                served.encodePrompt(PROMPTS.get(i)),
                4 + i,
                SamplingParams.greedy(),
                -1,
                Long.MAX_VALUE));
      }
      ExecutorService pool = Executors.newFixedThreadPool(PROMPTS.size());
      CountDownLatch go = new CountDownLatch(1);
      List<Future<ServedModel.Answer>> answers = new ArrayList<>();
      for (int i = 0; i < PROMPTS.size(); i++) {
        int n = i;
        answers.add(
            pool.submit(
                () -> {
                  go.await();
                  return served.answer(
                      PROMPTS.get(n), 4 + n, SamplingParams.greedy(), Long.MAX_VALUE);
                }));
      }
      go.countDown();
      for (int i = 0; i < PROMPTS.size(); i++) {
        ServedModel.Answer a = answers.get(i).get();
        ScoredGeneration.Result want = alone.get(i);
        assertThat(a.text()).as("prompt %d", i).isEqualTo(served.tokenizer().decode(want.tokens()));
        assertThat(a.completionTokens()).isEqualTo(want.tokens().length);
        assertThat(a.confidence()).isCloseTo(want.meanLogProb(), within(1e-4));
        assertThat(a.finishReason()).isEqualTo("length");
      }
      pool.shutdown();
    } finally {
      served.retire();
    }
  }

  @Test
  void shouldRefuseARequestOnceTheModelIsFreed() throws Exception {
    ServedModel served = load();
    assertThat(served.answer("5+5=", 2, SamplingParams.greedy(), Long.MAX_VALUE).completionTokens())
        .isEqualTo(2);

    served.retire();

    assertThat(served.isFreed()).isTrue();
    assertThatThrownBy(() -> served.answer("5+5=", 2, SamplingParams.greedy(), Long.MAX_VALUE))
        .isInstanceOf(IllegalStateException.class)
        .hasMessageContaining("closed");
  }
}
