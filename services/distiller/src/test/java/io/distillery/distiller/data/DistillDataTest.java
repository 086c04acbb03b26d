package io.distillery.distiller.data;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.distillery.distiller.DistillerParams;
import io.distillery.model.config.LlamaConfig;
import io.distillery.model.llama.LlamaModel;
import io.distillery.model.tasks.TaskExample;
import io.distillery.model.tasks.TaskKind;
import io.distillery.model.tasks.TaskSettings;
import io.distillery.model.tokenizer.ByteTokenizer;
import io.distillery.stage.StageParams;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class DistillDataTest {

  static LlamaModel teacher() {
    return LlamaModel.random(
        LlamaConfig.builder()
            .vocabSize(ByteTokenizer.VOCAB_SIZE)
            .hiddenSize(16)
            .intermediateSize(16)
            .numHiddenLayers(1)
            .numAttentionHeads(2)
            .numKeyValueHeads(1)
            .headDim(8)
            .maxPositionEmbeddings(64)
            .build(),
        5);
  }

  static DistillerParams params(String json) throws Exception {
    return StageParams.bind("distiller", json, DistillerParams.class);
  }

  @Test
  void shouldNeverGenerateATaskPromptTheTeacherHoldsOut() throws Exception {
    try (LlamaModel t = teacher()) {
      DistillerParams p =
          params("{\"source\":\"tasks\",\"samples\":40,\"evalSamples\":4,\"seed\":3}");
      DistillData open = build(p, t, Set.of());
      // the teacher's held-out prompts, as the same generator would have drawn them here
      Set<String> reserved = new HashSet<>();
      open.train().subList(0, 10).forEach(e -> reserved.add(e.prompt()));
      reserved.add(open.heldout().getFirst().prompt());
      DistillData data = build(p, t, reserved);
      assertThat(data.train()).hasSize(40).noneMatch(e -> reserved.contains(e.prompt()));
      assertThat(data.heldout()).hasSize(4).noneMatch(e -> reserved.contains(e.prompt()));
    }
  }

  private static DistillData build(DistillerParams p, LlamaModel t, Set<String> reserved)
      throws Exception {
    return DistillData.build(
        p,
        t.config(),
        t::generate,
        List.of(TaskKind.values()),
        TaskSettings.defaults(),
        reserved,
        List.of(),
        List.of());
  }

  @Test
  void shouldTraceEveryTaskPromptWithTheTeacherWhenLabelsAreOff() throws Exception {
    try (LlamaModel t = teacher()) {
      DistillerParams p =
          params(
              "{\"source\":\"tasks\",\"samples\":6,\"evalSamples\":2,\"labels\":false,"
                  + "\"maxNewTokens\":3,\"decoding\":\"sampled\",\"seed\":3}");
      DistillData a = DistillData.build(p, t, List.of(), List.of());
      assertThat(a.traces()).isEqualTo(6);
      assertThat(a.taskPrompts()).isEqualTo(6);
      assertThat(a.heldout()).hasSize(2);
      // traces are the teacher's continuation (at most maxNewTokens bytes, each at most one
      // character once decoded;
      // a random teacher's invalid UTF-8 decodes to U+FFFD), not the task's answers
      assertThat(a.train())
          .allSatisfy(
              e ->
                  assertThat(e.answer().codePointCount(0, e.answer().length()))
                      .isLessThanOrEqualTo(3));
      DistillData b = DistillData.build(p, t, List.of(), List.of());
      assertThat(b.train()).isEqualTo(a.train()); // seeded sampling
      DistillData labelled =
          DistillData.build(
              params("{\"source\":\"tasks\",\"samples\":6,\"evalSamples\":2," + "\"seed\":3}"),
              t,
              List.of(),
              List.of());
      assertThat(labelled.traces()).isZero();
      assertThat(labelled.train())
          .extracting(TaskExample::prompt)
          .containsExactlyElementsOf(a.train().stream().map(TaskExample::prompt).toList());
    }
  }

  @Test
  void shouldWeightMisfireRowsAndSkipHeldOutOnesOrThoseWithoutExpectedAnswer(@TempDir Path dir)
      throws Exception {
    Path misfires = Files.createDirectories(dir.resolve("m"));
    Files.writeString(
        misfires.resolve(DataFiles.MISFIRES),
        """
        {"prompt":"1+1=","output":"3","expected":"2","split":"train"}
        {"prompt":"2+2=","output":"5","expected":"4","split":"heldout"}
        {"prompt":"3+3=","output":"?","expected":null,"split":"train"}
        """);
    Path prompts = dir.resolve("p.jsonl");
    Files.writeString(prompts, "{\"prompt\":\"copy:ab=\",\"answer\":\"ab\"}\n\n");
    try (LlamaModel t = teacher()) {
      DistillData d =
          DistillData.build(
              params("{\"misfireWeight\":5}"), t, List.of(prompts), List.of(misfires));
      assertThat(d.train()).extracting(TaskExample::prompt).containsExactly("copy:ab=", "1+1=");
      assertThat(d.weights()).containsExactly(1.0, 5.0);
      assertThat(d.misfireRows()).isEqualTo(1);
      assertThat(d.misfiresSkipped()).isEqualTo(2);
      assertThat(d.traces()).isZero();
    }
  }

  @Test
  void shouldNameFileAndLineWhenAPromptIsMissing(@TempDir Path dir) throws Exception {
    Path prompts = dir.resolve("p.jsonl");
    Files.writeString(prompts, "{\"prompt\":\"a=\"}\n{\"answer\":\"x\"}\n");
    try (LlamaModel t = teacher()) {
      assertThatThrownBy(() -> DistillData.build(params("{}"), t, List.of(prompts), List.of()))
          .isInstanceOf(DataFiles.BadDataException.class)
          .hasMessageContaining("p.jsonl:2: needs a string field " + "\"prompt\"");
    }
  }
}
