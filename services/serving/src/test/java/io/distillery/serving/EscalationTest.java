package io.distillery.serving;

import static org.assertj.core.api.Assertions.assertThat;

import io.distillery.model.llama.LlamaModel;
import io.distillery.model.tokenizer.ByteTokenizer;
import io.distillery.model.tokenizer.TextTokenizer;
import io.distillery.runtime.artefact.FileArtefactStore;
import io.distillery.schemas.common.ArtefactRef;
import io.distillery.schemas.misfire.Misfire;
import io.distillery.schemas.misfire.MisfireReason;
import io.distillery.serving.model.ServedModel;
import io.vertx.core.json.JsonObject;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.OptionalInt;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Two-tier serving: answers below the confidence threshold come from the teacher and are recorded.
 */
class EscalationTest {

  @TempDir Path tmp;

  @Test
  void shouldReturnTheTeachersAnswerAndRecordAnEscalatedMisfireWhenConfidenceIsBelowTheThreshold()
      throws Exception {
    FileArtefactStore store = new FileArtefactStore(tmp.resolve("store"));
    ArtefactRef student = Rollouts.pack(store, tmp, 32, 21);
    ArtefactRef teacher = Rollouts.pack(store, tmp, 64, 22);
    CapturedEvents events = new CapturedEvents();
    // a mean log-probability is below 0 unless the model is certain of every token: everything
    // escalates
    ServingConfig config =
        ServingConfig.of(null, null, store.root())
            .withNodeId("two-tier")
            .withConfidenceThreshold(0);
    try (ServingNode node = ServingNode.start(config, events)) {
      node.apply(Rollouts.requested("chat", student, 100, teacher));

      Http.Reply r =
          Http.complete(node.url(), new JsonObject().put("prompt", "3+4=").put("max_tokens", 6));

      assertThat(r.status()).as(r.text()).isEqualTo(200);
      Path teacherModel = store.resolve(teacher).resolve("model");
      Path studentModel = store.resolve(student).resolve("model");
      String teacherText = TinyCheckpoints.greedyAnswer(teacherModel, "3+4=", 6);
      String studentText = TinyCheckpoints.greedyAnswer(studentModel, "3+4=", 6);
      assertThat(teacherText).isNotEqualTo(studentText);
      assertThat(r.json().getJsonArray("choices").getJsonObject(0).getString("text"))
          .isEqualTo(teacherText);
      assertThat(r.json().getJsonObject("distillery").getBoolean("escalated")).isTrue();
      assertThat(r.json().getJsonObject("distillery").getString("artefactSha256"))
          .isEqualTo(student.getSha256());
      Misfire m = events.of(Misfire.class).getFirst();
      assertThat(m.getReason()).isEqualTo(MisfireReason.ESCALATED);
      assertThat(m.getOutput()).isEqualTo(studentText);
      assertThat(m.getExpected()).isEqualTo(teacherText);
      assertThat(m.getArtefactSha256()).isEqualTo(student.getSha256());
      assertThat(m.getConfidence())
          .isEqualTo(r.json().getJsonObject("distillery").getDouble("confidence"));
      assertThat(node.routing("chat").teacher().sha256()).isEqualTo(teacher.getSha256());
    }
  }

  @Test
  void shouldAnswerFromTheStudentWithoutMisfireWhenConfidenceClearsTheThreshold() throws Exception {
    FileArtefactStore store = new FileArtefactStore(tmp.resolve("store"));
    ArtefactRef student = Rollouts.pack(store, tmp, 32, 23);
    ArtefactRef teacher = Rollouts.pack(store, tmp, 64, 24);
    CapturedEvents events = new CapturedEvents();
    ServingConfig config =
        ServingConfig.of(null, null, store.root())
            .withNodeId("two-tier")
            .withConfidenceThreshold(-1e9);
    try (ServingNode node = ServingNode.start(config, events)) {
      node.apply(Rollouts.requested("chat", student, 100, teacher));

      Http.Reply r =
          Http.complete(node.url(), new JsonObject().put("prompt", "3+4=").put("max_tokens", 6));

      assertThat(r.json().getJsonObject("distillery").getBoolean("escalated")).isFalse();
      assertThat(r.json().getJsonArray("choices").getJsonObject(0).getString("text"))
          .isEqualTo(
              TinyCheckpoints.greedyAnswer(store.resolve(student).resolve("model"), "3+4=", 6));
      assertThat(events.of(Misfire.class)).isEmpty();
    }
  }

  @Test
  void shouldRecordLowConfidenceWhenThereIsNoTeacherToAsk() throws Exception {
    FileArtefactStore store = new FileArtefactStore(tmp.resolve("store"));
    ArtefactRef student = Rollouts.pack(store, tmp, 32, 25);
    CapturedEvents events = new CapturedEvents();
    ServingConfig config =
        ServingConfig.of(null, null, store.root())
            .withNodeId("one-tier")
            .withConfidenceThreshold(0);
    try (ServingNode node = ServingNode.start(config, events)) {
      node.apply(Rollouts.requested("chat", student, 100, null));

      Http.Reply r =
          Http.complete(node.url(), new JsonObject().put("prompt", "x").put("max_tokens", 2));

      assertThat(r.json().getJsonObject("distillery").getBoolean("escalated")).isFalse();
      assertThat(events.of(Misfire.class))
          .singleElement()
          .satisfies(m -> assertThat(m.getReason()).isEqualTo(MisfireReason.LOW_CONFIDENCE));
    }
  }

  @Test
  void shouldStopTheTeacherAtTheRequestsDeadlineAndAnswerFromTheStudent() throws Exception {
    Path studentDir =
        TinyCheckpoints.write(Files.createDirectories(tmp.resolve("student")), 32, 2, 26);
    Path teacherDir =
        TinyCheckpoints.write(Files.createDirectories(tmp.resolve("teacher")), 32, 2, 27);
    CapturedEvents events = new CapturedEvents();
    // the request may take 2 s; the teacher spends 3 s before its first token (a tokenizer that
    // sleeps), so only a
    // teacher bound by the request's deadline stops there, without a token, and the student's
    // answer is returned
    ServingConfig config =
        ServingConfig.of(null, null, null)
            .withNodeId("deadline")
            .withConfidenceThreshold(0)
            .withTiming(Duration.ofSeconds(2), 60_000);
    ServedModel student =
        new ServedModel("s", "file:///s", LlamaModel.load(studentDir), ByteTokenizer.instance());
    ServedModel teacher =
        new ServedModel(
            "t",
            "file:///t",
            LlamaModel.load(teacherDir),
            new SlowTokenizer(Duration.ofSeconds(3)));
    try (ServingNode node = ServingNode.start(config, events)) {
      node.serve("chat", student, teacher);
      long start = System.nanoTime();

      Http.Reply r =
          Http.complete(node.url(), new JsonObject().put("prompt", "3+4=").put("max_tokens", 64));

      long millis = (System.nanoTime() - start) / 1_000_000;
      assertThat(r.status()).as(r.text()).isEqualTo(200);
      assertThat(r.json().getJsonObject("distillery").getBoolean("escalated")).isFalse();
      assertThat(r.json().getJsonArray("choices").getJsonObject(0).getString("text"))
          .isEqualTo(TinyCheckpoints.greedyAnswer(studentDir, "3+4=", 64));
      assertThat(millis)
          .as("answered after the teacher's 3 s pause, not 64 teacher tokens later")
          .isLessThan(6_000);
      assertThat(events.of(Misfire.class))
          .singleElement()
          .satisfies(m -> assertThat(m.getReason()).isEqualTo(MisfireReason.LOW_CONFIDENCE));
    }
  }

  /** The byte tokenizer, with a pause before every encoding: a teacher that is slow to start. */
  record SlowTokenizer(Duration pause) implements TextTokenizer {
    @Override
    public int[] encode(String text, boolean addBos, boolean addEos) {
      try {
        Thread.sleep(pause);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
      }
      return ByteTokenizer.instance().encode(text, addBos, addEos);
    }

    @Override
    public String decode(int[] ids) {
      return ByteTokenizer.instance().decode(ids);
    }

    @Override
    public int vocabSize() {
      return ByteTokenizer.instance().vocabSize();
    }

    @Override
    public OptionalInt bosId() {
      return ByteTokenizer.instance().bosId();
    }

    @Override
    public OptionalInt eosId() {
      return ByteTokenizer.instance().eosId();
    }

    @Override
    public OptionalInt padId() {
      return ByteTokenizer.instance().padId();
    }
  }
}
