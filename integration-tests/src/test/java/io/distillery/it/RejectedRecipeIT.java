package io.distillery.it;

import static org.assertj.core.api.Assertions.assertThat;

import io.distillery.schemas.run.RunState;
import io.distillery.schemas.run.RunStatus;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.UUID;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * Recipes that cannot run are rejected by the planner with a readable reason, visible in watch and
 * status.
 */
class RejectedRecipeIT {

  static Cluster.Services services;

  @BeforeAll
  static void start() throws Exception {
    services = Cluster.services(true, "rejected", "hash");
  }

  @AfterAll
  static void stop() {
    services.close();
  }

  /**
   * Publishes a registration directly (the CLI refuses cycles before sending, so this is what a raw
   * producer does).
   */
  static String publish(String recipe) throws Exception {
    String runId = UUID.randomUUID().toString();
    Path model = Cluster.model("x");
    var store = new io.distillery.runtime.artefact.FileArtefactStore(Cluster.store());
    var ref = store.put(model, "hf-model", true);
    var reg =
        io.distillery.schemas.model.ModelRegistered.newBuilder()
            .setRunId(runId)
            .setModelId("raw")
            .setUri(ref.getUri())
            .setSha256(ref.getSha256())
            .setRecipe(recipe)
            .setRegisteredAt(java.time.Instant.now())
            .build();
    var kafka = Cluster.kafka();
    try (var p =
        new org.apache.kafka.clients.producer.KafkaProducer<>(
            kafka.producer("it"),
            new org.apache.kafka.common.serialization.StringSerializer(),
            kafka.serde(io.distillery.schemas.model.ModelRegistered.class))) {
      p.send(
              new org.apache.kafka.clients.producer.ProducerRecord<>(
                  io.distillery.runtime.kafka.Topics.MODELS_REGISTERED, "raw", reg))
          .get();
    }
    return runId;
  }

  @Test
  void shouldRejectACycleWithTheCycleNamed() throws Exception {
    String runId =
        publish(
            """
        name: loop
        stages:
          a: { stage: hash, after: [c] }
          b: { stage: hash, after: [a] }
          c: { stage: hash, after: [b] }
        """);
    RunState r =
        Cluster.awaitRun(runId, s -> s.getStatus() != RunStatus.RUNNING, Duration.ofSeconds(60));
    assertThat(r.getStatus()).isEqualTo(RunStatus.REJECTED);
    assertThat(r.getReason()).contains("the stages form a cycle: a -> b -> c -> a");

    var watch = Cluster.cli("watch", runId, "--plain", "--timeout", "30");
    assertThat(watch.code()).isEqualTo(1);
    assertThat(watch.out()).contains("REJECTED").contains("cycle");
  }

  @Test
  void shouldRejectAStageThatNoWorkerServes() throws Exception {
    Path recipe = Files.createTempFile(Cluster.newDir("r"), "recipe", ".yaml");
    Files.writeString(
        recipe,
        """
        name: ghost
        stages:
          a: { stage: hash }
          b: { stage: ghost-stage, after: [a] }
        """,
        StandardCharsets.UTF_8);
    var reg =
        Cluster.cli(
            "register", "--model", Cluster.model("y").toString(), "--recipe", recipe.toString());
    assertThat(reg.code()).as(reg.err()).isZero();
    String runId = reg.out().trim();
    RunState r =
        Cluster.awaitRun(runId, s -> s.getStatus() != RunStatus.RUNNING, Duration.ofSeconds(60));
    assertThat(r.getStatus()).isEqualTo(RunStatus.REJECTED);
    assertThat(r.getReason()).contains("no worker serves stage 'ghost-stage'");
    var status = Cluster.cli("status", runId);
    assertThat(status.out()).contains("REJECTED").contains("ghost-stage");
  }

  @Test
  void shouldRefuseACycleInTheCliBeforeSending() throws Exception {
    Path recipe = Files.createTempFile(Cluster.newDir("r"), "recipe", ".yaml");
    Files.writeString(
        recipe,
        "name: loop\nstages:\n  a: { stage: hash, after: [b] }\n  b: { stage: hash, after: [a] }\n");
    var reg =
        Cluster.cli(
            "register", "--model", Cluster.model("z").toString(), "--recipe", recipe.toString());
    assertThat(reg.code()).isEqualTo(2);
    assertThat(reg.err()).contains("cycle");
  }
}
