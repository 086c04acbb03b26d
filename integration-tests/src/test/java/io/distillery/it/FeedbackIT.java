package io.distillery.it;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.distillery.feedback.FeedbackApp;
import io.distillery.feedback.FeedbackConfig;
import io.distillery.runtime.kafka.Topics;
import io.distillery.schemas.common.ArtefactRef;
import io.distillery.schemas.deployment.DeploymentEvent;
import io.distillery.schemas.deployment.DeploymentRequested;
import io.distillery.schemas.misfire.Misfire;
import io.distillery.schemas.misfire.MisfireReason;
import io.distillery.schemas.model.ModelRegistered;
import io.distillery.schemas.serving.ServingTraffic;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.UUID;
import java.util.function.Predicate;
import org.apache.avro.specific.SpecificRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.junit.jupiter.api.Test;

/**
 * The feedback service on the real broker and registry: a deployment, its traffic and misfires over
 * the thresholds start exactly one re-distillation run whose misfire dataset holds the window's
 * distinct misfires, although the service is replaced mid-window by an instance on an empty state
 * directory (it restores from the changelogs) and the inputs are later replayed from the start; bad
 * misfires go to the DLQ.
 *
 * <p>Event times lie an hour ahead, so only event time closes windows here (never the wall clock):
 * windows of 20 s every 5 s, 1 s grace; trips at >= 6 distinct misfires and rate >= 3 %. All
 * misfires fall into [B, B+3s), so the first window judged, [B-15s, B+5s), is the incident; it
 * holds 8 distinct misfires (4 before the restart, 4 after) and 2 repeats over 200 requests: rate 4
 * %.
 */
class FeedbackIT {

  static final ObjectMapper JSON = new ObjectMapper();
  static final HttpClient HTTP = HttpClient.newHttpClient();

  final String dep = "fb-" + UUID.randomUUID();
  final long base = Math.floorDiv(System.currentTimeMillis() + 3_600_000, 20_000) * 20_000;

  FeedbackConfig config(Path stateDir, String appId) {
    return FeedbackConfig.of(Cluster.bootstrap(), Cluster.registry(), stateDir, Cluster.store())
        .withPolicy(
            Duration.ofSeconds(20),
            Duration.ofSeconds(5),
            Duration.ofSeconds(1),
            0.03,
            6,
            Duration.ofHours(1),
            3)
        .withApplicationId(appId);
  }

  @Test
  void shouldStartOneRunPerIncidentAcrossARestartAndAReplay() throws Exception {
    String appId = "feedback-it-" + UUID.randomUUID();
    Path recipe = Cluster.recipe("name: redistill\nstages:\n  d: { stage: distiller }\n");
    Path student = Files.createDirectories(Cluster.newDir("package").resolve("model"));
    Files.writeString(student.resolve("config.json"), "{\"model_type\":\"llama\"}");
    String expectedRun =
        UUID.nameUUIDFromBytes(
                ("distillery-feedback|" + dep + "|" + (base - 15_000))
                    .getBytes(java.nio.charset.StandardCharsets.UTF_8))
            .toString();

    try (var producer =
        new KafkaProducer<>(
            Cluster.kafka().producer("it-feedback"),
            new StringSerializer(),
            new ByteArraySerializer())) {
      try (FeedbackApp first =
          FeedbackApp.start(config(Cluster.newDir("feedback-a"), appId), null)
              .awaitRunning(Duration.ofSeconds(90))) {
        send(producer, Topics.DEPLOYMENTS, dep, deployment(student, recipe));
        awaitView(first, j -> j.path("known").asBoolean());
        send(producer, Topics.SERVING_TRAFFIC, dep, traffic(100, 500));
        for (int i = 1; i <= 4; i++) {
          send(producer, Topics.MISFIRES, dep, misfire(dep, "q" + i, 1000 + 200 * i));
        }
        send(producer, Topics.MISFIRES, dep, misfire(dep, "q1", 1900)); // a repeat: counted once
        JsonNode w =
            awaitWindow(
                first,
                j -> j.path("duplicates").asLong() == 1 && j.path("requests").asLong() == 100);
        assertThat(w.path("misfires").asLong()).isEqualTo(4);
      }

      // mid-window, a new instance on an empty state directory: the counts come back from the
      // changelogs
      Path fresh = Cluster.newDir("feedback-b");
      try (FeedbackApp second =
          FeedbackApp.start(config(fresh, appId), null).awaitRunning(Duration.ofSeconds(90))) {
        for (int i = 5; i <= 8; i++) {
          send(producer, Topics.MISFIRES, dep, misfire(dep, "q" + i, 1000 + 200 * i));
        }
        send(producer, Topics.MISFIRES, dep, misfire(dep, "q2", 2900));
        String garbageKey = dep + "-garbage";
        producer
            .send(new ProducerRecord<>(Topics.MISFIRES, garbageKey, new byte[] {42, 1, 2, 3}))
            .get();
        String ghost = dep + "-ghost";
        send(producer, Topics.MISFIRES, ghost, misfire(ghost, "q1", 2000));
        String emptyKey = dep + "-empty";
        send(producer, Topics.MISFIRES, emptyKey, misfire(dep, "", 2000));
        send(producer, Topics.SERVING_TRAFFIC, dep, traffic(100, 3000));
        JsonNode w =
            awaitWindow(
                second,
                j -> j.path("duplicates").asLong() == 2 && j.path("requests").asLong() == 200);
        assertThat(w.path("misfires").asLong()).isEqualTo(8);
        assertThat(w.path("rate").asDouble()).isEqualTo(0.04);
        assertThat(runsFor(Duration.ofMillis(500))).as("no window is judged yet").isEmpty();

        send(
            producer,
            Topics.SERVING_TRAFFIC,
            dep,
            traffic(0, 30_000)); // event time passes the windows' ends
        List<ModelRegistered> runs = awaitRuns(1);
        ModelRegistered run = runs.getFirst();
        assertThat(run.getRunId()).isEqualTo(expectedRun);
        assertThat(run.getUri()).isEqualTo("file:///models/teacher");
        assertThat(run.getRecipe()).isEqualTo(Files.readString(recipe));
        assertThat(run.getLabels())
            .containsEntry("deployment", dep)
            .containsEntry("trigger", "misfires")
            .containsEntry("misfires", "8")
            .containsEntry("misfireRate", "0.040000")
            .containsEntry("parentRun", "parent-run");
        assertThat(run.getInputs())
            .extracting(ArtefactRef::getFormat)
            .containsExactly("misfires-jsonl", "hf-checkpoint");
        Path dataset =
            Path.of(URI.create(run.getInputs().getFirst().getUri())).resolve("misfires.jsonl");
        List<JsonNode> rows = new ArrayList<>();
        for (String line : Files.readAllLines(dataset)) {
          rows.add(JSON.readTree(line));
        }
        assertThat(rows)
            .extracting(r -> r.path("prompt").asText())
            .containsExactly("q1", "q2", "q3", "q4", "q5", "q6", "q7", "q8");
        assertThat(rows)
            .allSatisfy(r -> assertThat(r.path("split").asText()).isIn("train", "heldout"));
        assertThat(rows.getFirst().path("expected").asText()).isEqualTo("answer q1");

        assertThat(DeadLetterIT.deadLetters(Topics.MISFIRES, garbageKey, 1))
            .singleElement()
            .satisfies(d -> assertThat(d.getError()).contains("magic byte"));
        assertThat(DeadLetterIT.deadLetters(Topics.MISFIRES, ghost, 1))
            .singleElement()
            .satisfies(
                d -> assertThat(d.getError()).contains("unknown deployment '" + ghost + "'"));
        assertThat(DeadLetterIT.deadLetters(Topics.MISFIRES, emptyKey, 1))
            .singleElement()
            .satisfies(d -> assertThat(d.getError()).contains("empty prompt"));
        assertThat(
                second
                    .metrics()
                    .registry()
                    .find("distillery_feedback_dropped")
                    .tag("reason", "undecodable")
                    .counter()
                    .count())
            .isEqualTo(1);

        JsonNode view = awaitView(second, j -> !j.path("triggers").isEmpty());
        assertThat(view.path("triggers").get(0).path("runId").asText()).isEqualTo(expectedRun);
        assertThat(view.path("coolingDown").asBoolean()).isTrue();
        var cli = Cluster.cli("misfires", dep, "--feedback-url", second.url());
        assertThat(cli.code()).as(cli.err()).isZero();
        assertThat(cli.out()).contains("deployment " + dep).contains(expectedRun + " FIRED");
      }

      // replay: the same application id, its input offsets reset to the start, again on an empty
      // state directory
      resetToEarliest(appId);
      try (FeedbackApp third =
          FeedbackApp.start(config(Cluster.newDir("feedback-c"), appId), null)
              .awaitRunning(Duration.ofSeconds(90))) {
        long deadline = System.nanoTime() + Duration.ofSeconds(60).toNanos();
        while (late(third) < 10 && System.nanoTime() < deadline) {
          Thread.sleep(50);
        }
        // at least this deployment's 10: other test classes' deployments share the topics and
        // replay as well
        assertThat(late(third))
            .as("every replayed misfire of the judged windows is late")
            .isGreaterThanOrEqualTo(10);
        assertThat(runsFor(Duration.ofSeconds(2)))
            .extracting(ModelRegistered::getRunId)
            .containsExactly(expectedRun);
      }
    }
  }

  @Test
  void shouldStartAsAServicePluginAndLetTheCliFindIt() throws Exception {
    var plugin =
        java.util.ServiceLoader.load(io.distillery.runtime.service.ServicePlugin.class).stream()
            .map(java.util.ServiceLoader.Provider::get)
            .filter(s -> s.name().equals("feedback"))
            .findFirst()
            .orElseThrow();
    Path runDir = Cluster.newDir("run");
    var vertx = io.vertx.core.Vertx.vertx();
    try (AutoCloseable service =
        plugin.start(
            new io.distillery.runtime.service.ServicePlugin.Environment(
                Cluster.bootstrap(), Cluster.registry(), runDir, Cluster.store(), vertx))) {
      String url = JSON.readTree(runDir.resolve("feedback.json").toFile()).path("url").asText();
      var health =
          HTTP.send(
              HttpRequest.newBuilder(URI.create(url + "/health")).GET().build(),
              HttpResponse.BodyHandlers.ofString());
      assertThat(health.statusCode()).isEqualTo(200);
      var cli = Cluster.cli("misfires", "--dir", runDir.toString());
      assertThat(cli.code()).as(cli.err()).isZero();
      assertThat(cli.out())
          .contains("rate >= 5.00% and >= 50 distinct misfires per 10m window (every 1m");
      var unknown =
          Cluster.cli("misfires", "no-such-deployment", "--dir", runDir.toString(), "--json");
      assertThat(unknown.code()).isEqualTo(1);
      assertThat(unknown.err()).contains("no deployment 'no-such-deployment'");
    } finally {
      vertx.close().toCompletionStage().toCompletableFuture().get();
    }
  }

  static double late(FeedbackApp app) {
    var c =
        app.metrics()
            .registry()
            .find("distillery_feedback_dropped")
            .tag("reason", "late")
            .counter();
    return c == null ? 0 : c.count();
  }

  DeploymentEvent deployment(Path student, Path recipe) {
    Map<String, String> labels =
        new HashMap<>(
            Map.of(
                "runId",
                "parent-run",
                "modelId",
                dep,
                "student",
                student.toUri().toString(),
                "redistillRecipe",
                recipe.toString(),
                "teacher",
                "file:///models/teacher"));
    var req =
        DeploymentRequested.newBuilder()
            .setArtefact(
                ArtefactRef.newBuilder()
                    .setUri(student.getParent().toUri().toString())
                    .setSha256("pkg")
                    .setBytes(1)
                    .setFormat("djl-serving")
                    .build())
            .setTarget("local")
            .setCanaryPercent(100)
            .setTeacher(
                ArtefactRef.newBuilder()
                    .setUri("file:///models/teacher")
                    .setSha256("t")
                    .setBytes(1)
                    .setFormat("hf-checkpoint")
                    .build())
            .setLabels(labels)
            .build();
    return DeploymentEvent.newBuilder()
        .setDeploymentId(dep)
        .setRunId("parent-run")
        .setTs(Instant.now())
        .setPayload(req)
        .build();
  }

  ServingTraffic traffic(long requests, long offsetMs) {
    return ServingTraffic.newBuilder()
        .setDeploymentId(dep)
        .setNode("n1")
        .setArtefactSha256("pkg")
        .setRequests(requests)
        .setIntervalStart(Instant.ofEpochMilli(base + offsetMs - 500))
        .setTs(Instant.ofEpochMilli(base + offsetMs))
        .build();
  }

  Misfire misfire(String deployment, String prompt, long offsetMs) {
    return Misfire.newBuilder()
        .setDeploymentId(deployment)
        .setRequestId(UUID.randomUUID().toString())
        .setPrompt(prompt)
        .setOutput("wrong " + prompt)
        .setExpected("answer " + prompt)
        .setReason(MisfireReason.WRONG_ANSWER)
        .setTs(Instant.ofEpochMilli(base + offsetMs))
        .build();
  }

  @SuppressWarnings("unchecked")
  static <T extends SpecificRecord> void send(
      KafkaProducer<String, byte[]> p, String topic, String key, T value) throws Exception {
    var serde = Cluster.kafka().serde((Class<T>) value.getClass());
    p.send(new ProducerRecord<>(topic, key, serde.serialize(topic, value))).get();
  }

  JsonNode view(FeedbackApp app) throws Exception {
    var res =
        HTTP.send(
            HttpRequest.newBuilder(URI.create(app.url() + "/misfires/" + dep)).GET().build(),
            HttpResponse.BodyHandlers.ofString());
    return res.statusCode() == 200 ? JSON.readTree(res.body()) : null;
  }

  JsonNode awaitView(FeedbackApp app, Predicate<JsonNode> until) throws Exception {
    long deadline = System.nanoTime() + Duration.ofSeconds(60).toNanos();
    JsonNode last = null;
    while (System.nanoTime() < deadline) {
      last = view(app);
      if (last != null && until.test(last)) {
        return last;
      }
      Thread.sleep(50);
    }
    throw new AssertionError("the /misfires view of " + dep + " did not get there; last: " + last);
  }

  /** The window starting at B-15s, the one that will be judged first. */
  JsonNode awaitWindow(FeedbackApp app, Predicate<JsonNode> until) throws Exception {
    JsonNode v =
        awaitView(
            app,
            j -> {
              for (JsonNode w : j.path("windows")) {
                if (w.path("startMs").asLong() == base - 15_000 && until.test(w)) {
                  return true;
                }
              }
              return false;
            });
    for (JsonNode w : v.path("windows")) {
      if (w.path("startMs").asLong() == base - 15_000) {
        return w;
      }
    }
    throw new AssertionError("unreachable");
  }

  /**
   * Re-distillation runs of this test's deployment, read from the start of the topic for {@code
   * quiet}.
   */
  List<ModelRegistered> runsFor(Duration quiet) {
    var serde = Cluster.kafka().serde(ModelRegistered.class);
    List<ModelRegistered> found = new ArrayList<>();
    try (KafkaConsumer<String, byte[]> c =
        new KafkaConsumer<>(Cluster.kafka().consumer(null, "it-feedback"))) {
      List<TopicPartition> parts =
          c.partitionsFor(Topics.MODELS_REGISTERED).stream()
              .map(p -> new TopicPartition(p.topic(), p.partition()))
              .toList();
      c.assign(parts);
      c.seekToBeginning(parts);
      long deadline = System.nanoTime() + quiet.toNanos();
      while (System.nanoTime() < deadline) {
        c.poll(Duration.ofMillis(100))
            .forEach(
                r -> {
                  ModelRegistered m = serde.deserialize(r.topic(), r.value());
                  if (dep.equals(m.getLabels().get("deployment"))) {
                    found.add(m);
                  }
                });
      }
    }
    return found;
  }

  List<ModelRegistered> awaitRuns(int n) {
    long deadline = System.nanoTime() + Duration.ofSeconds(60).toNanos();
    List<ModelRegistered> runs = List.of();
    while (System.nanoTime() < deadline) {
      runs = runsFor(Duration.ofSeconds(1));
      if (runs.size() >= n) {
        return runsFor(Duration.ofSeconds(2)); // and nothing more arrives
      }
    }
    throw new AssertionError(
        "expected " + n + " re-distillation run(s) for " + dep + ", got " + runs.size());
  }

  /**
   * What {@code kafka-streams-application-reset --to-earliest} does to the input topics, with the
   * Admin API.
   */
  static void resetToEarliest(String appId) throws Exception {
    try (var admin = org.apache.kafka.clients.admin.Admin.create(Cluster.kafka().common())) {
      Map<TopicPartition, OffsetAndMetadata> offsets = new HashMap<>();
      for (String topic : List.of(Topics.MISFIRES, Topics.SERVING_TRAFFIC, Topics.DEPLOYMENTS)) {
        var desc = admin.describeTopics(List.of(topic)).allTopicNames().get().get(topic);
        desc.partitions()
            .forEach(
                p ->
                    offsets.put(
                        new TopicPartition(topic, p.partition()), new OffsetAndMetadata(0)));
      }
      admin.alterConsumerGroupOffsets(appId, offsets).all().get();
    }
  }
}
