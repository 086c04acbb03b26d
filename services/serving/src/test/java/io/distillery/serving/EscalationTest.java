package io.distillery.serving;

import static org.assertj.core.api.Assertions.assertThat;

import io.distillery.runtime.artefact.FileArtefactStore;
import io.distillery.schemas.common.ArtefactRef;
import io.distillery.schemas.misfire.Misfire;
import io.distillery.schemas.misfire.MisfireReason;
import io.vertx.core.json.JsonObject;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Two-tier serving: answers below the confidence threshold come from the teacher and are recorded. */
class EscalationTest {

  @TempDir
  Path tmp;

  @Test
  void shouldReturnTheTeachersAnswerAndRecordAnEscalatedMisfireWhenConfidenceIsBelowTheThreshold() throws Exception {
    FileArtefactStore store = new FileArtefactStore(tmp.resolve("store"));
    ArtefactRef student = Rollouts.pack(store, tmp, 32, 21);
    ArtefactRef teacher = Rollouts.pack(store, tmp, 64, 22);
    CapturedEvents events = new CapturedEvents();
    // a mean log-probability is below 0 unless the model is certain of every token: everything escalates
    ServingConfig config = ServingConfig.of(null, null, store.root()).withNodeId("two-tier").withConfidenceThreshold(0);
    try (ServingNode node = ServingNode.start(config, events)) {
      node.apply(Rollouts.requested("chat", student, 100, teacher));

      Http.Reply r = Http.complete(node.url(), new JsonObject().put("prompt", "3+4=").put("max_tokens", 6));

      assertThat(r.status()).as(r.text()).isEqualTo(200);
      Path teacherModel = store.resolve(teacher).resolve("model");
      Path studentModel = store.resolve(student).resolve("model");
      String teacherText = TinyCheckpoints.greedyAnswer(teacherModel, "3+4=", 6);
      String studentText = TinyCheckpoints.greedyAnswer(studentModel, "3+4=", 6);
      assertThat(teacherText).isNotEqualTo(studentText);
      assertThat(r.json().getJsonArray("choices").getJsonObject(0).getString("text")).isEqualTo(teacherText);
      assertThat(r.json().getJsonObject("distillery").getBoolean("escalated")).isTrue();
      assertThat(r.json().getJsonObject("distillery").getString("artefactSha256")).isEqualTo(student.getSha256());
      Misfire m = events.of(Misfire.class).getFirst();
      assertThat(m.getReason()).isEqualTo(MisfireReason.ESCALATED);
      assertThat(m.getOutput()).isEqualTo(studentText);
      assertThat(m.getExpected()).isEqualTo(teacherText);
      assertThat(m.getArtefactSha256()).isEqualTo(student.getSha256());
      assertThat(m.getConfidence()).isEqualTo(r.json().getJsonObject("distillery").getDouble("confidence"));
      assertThat(node.routing("chat").teacher().sha256()).isEqualTo(teacher.getSha256());
    }
  }

  @Test
  void shouldAnswerFromTheStudentWithoutMisfireWhenConfidenceClearsTheThreshold() throws Exception {
    FileArtefactStore store = new FileArtefactStore(tmp.resolve("store"));
    ArtefactRef student = Rollouts.pack(store, tmp, 32, 23);
    ArtefactRef teacher = Rollouts.pack(store, tmp, 64, 24);
    CapturedEvents events = new CapturedEvents();
    ServingConfig config = ServingConfig.of(null, null, store.root()).withNodeId("two-tier")
        .withConfidenceThreshold(-1e9);
    try (ServingNode node = ServingNode.start(config, events)) {
      node.apply(Rollouts.requested("chat", student, 100, teacher));

      Http.Reply r = Http.complete(node.url(), new JsonObject().put("prompt", "3+4=").put("max_tokens", 6));

      assertThat(r.json().getJsonObject("distillery").getBoolean("escalated")).isFalse();
      assertThat(r.json().getJsonArray("choices").getJsonObject(0).getString("text"))
          .isEqualTo(TinyCheckpoints.greedyAnswer(store.resolve(student).resolve("model"), "3+4=", 6));
      assertThat(events.of(Misfire.class)).isEmpty();
    }
  }

  @Test
  void shouldRecordLowConfidenceWhenThereIsNoTeacherToAsk() throws Exception {
    FileArtefactStore store = new FileArtefactStore(tmp.resolve("store"));
    ArtefactRef student = Rollouts.pack(store, tmp, 32, 25);
    CapturedEvents events = new CapturedEvents();
    ServingConfig config = ServingConfig.of(null, null, store.root()).withNodeId("one-tier").withConfidenceThreshold(0);
    try (ServingNode node = ServingNode.start(config, events)) {
      node.apply(Rollouts.requested("chat", student, 100, null));

      Http.Reply r = Http.complete(node.url(), new JsonObject().put("prompt", "x").put("max_tokens", 2));

      assertThat(r.json().getJsonObject("distillery").getBoolean("escalated")).isFalse();
      assertThat(events.of(Misfire.class)).singleElement()
          .satisfies(m -> assertThat(m.getReason()).isEqualTo(MisfireReason.LOW_CONFIDENCE));
    }
  }
}
