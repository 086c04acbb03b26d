package io.distillery.distiller.teacher;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.within;

import io.distillery.model.config.LlamaConfig;
import io.distillery.model.llama.LlamaModel;
import io.distillery.model.safetensors.DType;
import io.distillery.model.tasks.TaskExample;
import io.distillery.model.tokenizer.ByteTokenizer;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class TeacherLogitCacheTest {

  static LlamaConfig config() {
    return LlamaConfig.builder()
        .vocabSize(ByteTokenizer.VOCAB_SIZE)
        .hiddenSize(32)
        .intermediateSize(48)
        .numHiddenLayers(2)
        .numAttentionHeads(4)
        .numKeyValueHeads(2)
        .headDim(8)
        .maxPositionEmbeddings(64)
        .build();
  }

  static Path save(Path dir, long seed) throws Exception {
    try (LlamaModel m = LlamaModel.random(config(), seed)) {
      m.save(dir, DType.F32);
    }
    return dir;
  }

  static final List<TaskExample> EXAMPLES =
      List.of(
          new TaskExample("t", "1+1=", "2"),
          new TaskExample("t", "copy:abc=", "abc"),
          new TaskExample("t", "2+2=", "4"),
          new TaskExample("t", "rev:xy=", "yx"),
          new TaskExample("t", "9+1=", "10"));

  @Test
  void shouldGiveTheSameTopKWhenTheTeacherIsStreamedOrInMemory(@TempDir Path tmp) throws Exception {
    Path model = save(tmp.resolve("teacher"), 3);
    TopKLogits whole;
    try (LlamaModel teacher = LlamaModel.load(model)) {
      whole = TeacherLogitCache.computeWhole(teacher, EXAMPLES, 8, 2, "f", (d, t, s) -> {});
    }
    TopKLogits streamed =
        TeacherLogitCache.computeStreamed(
            model, config(), EXAMPLES, 8, 2, 100, 3, "f", (d, t, s) -> {});
    assertThat(streamed.offsets()).containsExactly(whole.offsets());
    assertThat(whole.positions()).isEqualTo(2 + 4 + 2 + 3 + 3); // answer bytes + </s> each
    assertThat(streamed.ids()).containsExactly(whole.ids());
    for (int i = 0; i < whole.logProbs().length; i++) {
      assertThat((double) streamed.logProbs()[i]).isCloseTo(whole.logProbs()[i], within(1e-4));
    }
    for (int p = 0; p < whole.positions(); p++) {
      assertThat((double) streamed.restLogMass()[p])
          .isCloseTo(whole.restLogMass()[p], within(1e-3));
      assertThat(whole.restLogMass()[p]).isLessThan(0f).isGreaterThan(Float.NEGATIVE_INFINITY);
    }
  }

  @Test
  void shouldReuseTheFileWhenTeacherDataAndKAreTheSame(@TempDir Path tmp) throws Exception {
    Path model = save(tmp.resolve("teacher"), 3);
    Path dir = tmp.resolve("work");
    AtomicInteger computed = new AtomicInteger();
    String hash = TeacherLogitCache.teacherHash(model);
    TeacherLogitCache.Computation pass =
        fp -> {
          computed.incrementAndGet();
          try (LlamaModel teacher = LlamaModel.load(model)) {
            return TeacherLogitCache.computeWhole(teacher, EXAMPLES, 4, 2, fp, (d, t, s) -> {});
          }
        };
    String fp = TeacherLogitCache.fingerprint(hash, 4, 259, EXAMPLES);
    TeacherLogitCache.Outcome first = TeacherLogitCache.obtain(dir, fp, pass);
    TeacherLogitCache.Outcome again =
        TeacherLogitCache.obtain(
            dir,
            TeacherLogitCache.fingerprint(TeacherLogitCache.teacherHash(model), 4, 259, EXAMPLES),
            pass);
    assertThat(first.hit()).isFalse();
    assertThat(again.hit()).isTrue();
    assertThat(computed).hasValue(1);
    assertThat(again.logits()).isEqualTo(first.logits());

    // another k, other data, or another teacher's weights: another key, computed anew
    assertThat(TeacherLogitCache.fingerprint(hash, 8, 259, EXAMPLES)).isNotEqualTo(fp);
    assertThat(TeacherLogitCache.fingerprint(hash, 4, 259, EXAMPLES.subList(0, 4)))
        .isNotEqualTo(fp);
    assertThat(TeacherLogitCache.teacherHash(save(tmp.resolve("other"), 4))).isNotEqualTo(hash);
    assertThat(TeacherLogitCache.teacherHash(save(tmp.resolve("same"), 3))).isEqualTo(hash);
    TeacherLogitCache.Outcome other =
        TeacherLogitCache.obtain(
            dir, TeacherLogitCache.fingerprint(hash, 4, 259, EXAMPLES.subList(0, 4)), pass);
    assertThat(other.hit()).isFalse();
    assertThat(computed).hasValue(2);
  }
}
