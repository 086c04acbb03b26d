package io.distillery.feedback;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import io.distillery.runtime.artefact.FileArtefactStore;
import io.distillery.runtime.kafka.Topics;
import io.distillery.schemas.common.ArtefactRef;
import io.distillery.schemas.deployment.DeploymentEvent;
import io.distillery.schemas.deployment.DeploymentRequested;
import io.distillery.schemas.dlq.DeadLetter;
import io.distillery.schemas.misfire.Misfire;
import io.distillery.schemas.misfire.MisfireReason;
import io.distillery.schemas.model.ModelRegistered;
import io.distillery.schemas.serving.ServingTraffic;
import io.micrometer.core.instrument.simple.SimpleMeterRegistry;
import java.net.URI;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.TestInputTopic;
import org.apache.kafka.streams.TestOutputTopic;
import org.apache.kafka.streams.TopologyTestDriver;
import org.apache.kafka.streams.state.KeyValueStore;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The topology on TopologyTestDriver with hand-checkable numbers. Policy unless a test says
 * otherwise: windows of 10 s every 5 s, 1 s grace, trips at >= 3 distinct misfires and rate >= 0.1,
 * cool-down 20 s, at most 2 runs a day. Event times are offsets from T0 (a multiple of 10 s), so a
 * misfire at T0+1s..T0+4s falls into the windows [T0-5s, T0+5s) and [T0, T0+10s).
 */
class FeedbackTopologyTest {

  static final long T0 = 1_800_000_000_000L;
  static final PlainAvro AVRO = new PlainAvro();

  @TempDir Path tmp;
  SimpleMeterRegistry meters;
  FeedbackMetrics metrics;
  TopologyTestDriver driver;
  TestInputTopic<String, DeploymentEvent> deployments;
  TestInputTopic<String, ServingTraffic> traffic;
  TestInputTopic<String, Misfire> misfires;
  TestOutputTopic<String, ModelRegistered> runs;
  TestOutputTopic<String, DeadLetter> dlq;
  Path recipe;
  Path student;

  @BeforeEach
  void files() throws Exception {
    recipe = tmp.resolve("redistill.yaml");
    Files.writeString(recipe, "name: redistill\nstages:\n  d: { stage: distiller }\n");
    student = Files.createDirectories(tmp.resolve("package").resolve("model"));
    Files.writeString(student.resolve("config.json"), "{\"model_type\":\"llama\"}");
  }

  @AfterEach
  void close() {
    if (driver != null) {
      driver.close();
    }
  }

  void start(FeedbackConfig config) throws Exception {
    meters = new SimpleMeterRegistry();
    metrics = new FeedbackMetrics(meters);
    var topology =
        FeedbackTopology.build(
            AVRO,
            TriggerPolicy.of(config),
            new MisfireDataset(new FileArtefactStore(config.storeRoot()), config.heldoutPercent()),
            RedistillRuns.of(config),
            metrics,
            "feedback-test",
            config.tick());
    Properties p = new Properties();
    p.put(StreamsConfig.APPLICATION_ID_CONFIG, "feedback-test");
    p.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, "unused:9092");
    p.put(StreamsConfig.STATE_DIR_CONFIG, config.stateDir().toString());
    p.put(StreamsConfig.STATESTORE_CACHE_MAX_BYTES_CONFIG, 0);
    driver = new TopologyTestDriver(topology, p, Instant.ofEpochMilli(T0));
    var s = Serdes.String();
    deployments =
        driver.createInputTopic(
            Topics.DEPLOYMENTS, s.serializer(), AVRO.serde(DeploymentEvent.class).serializer());
    traffic =
        driver.createInputTopic(
            Topics.SERVING_TRAFFIC, s.serializer(), AVRO.serde(ServingTraffic.class).serializer());
    misfires =
        driver.createInputTopic(
            Topics.MISFIRES, s.serializer(), AVRO.serde(Misfire.class).serializer());
    runs =
        driver.createOutputTopic(
            Topics.MODELS_REGISTERED,
            s.deserializer(),
            AVRO.serde(ModelRegistered.class).deserializer());
    dlq =
        driver.createOutputTopic(
            Topics.dlq(Topics.MISFIRES),
            s.deserializer(),
            AVRO.serde(DeadLetter.class).deserializer());
  }

  FeedbackConfig config() {
    return FeedbackConfig.of(
            "unused:9092", "http://unused", tmp.resolve("state"), tmp.resolve("store"))
        .withPolicy(
            Duration.ofSeconds(10),
            Duration.ofSeconds(5),
            Duration.ofSeconds(1),
            0.1,
            3,
            Duration.ofSeconds(20),
            2)
        .withRecipe(tmp.resolve("no-such-default.yaml"));
  }

  void deploy(String dep, Map<String, String> extraLabels) {
    Map<String, String> labels =
        new HashMap<>(
            Map.of(
                "runId",
                "parent-1",
                "modelId",
                "m1",
                "student",
                student.toUri().toString(),
                "redistillRecipe",
                recipe.toString(),
                "teacher",
                "file:///teacher"));
    labels.putAll(extraLabels);
    labels.values().removeIf(String::isEmpty);
    var req =
        DeploymentRequested.newBuilder()
            .setArtefact(ref(tmp.resolve("package").toUri().toString(), "djl-serving"))
            .setTarget("local")
            .setCanaryPercent(100)
            .setTeacher(ref("file:///teacher", "hf-checkpoint"))
            .setLabels(labels)
            .build();
    deployments.pipeInput(
        dep,
        DeploymentEvent.newBuilder()
            .setDeploymentId(dep)
            .setRunId("parent-1")
            .setTs(Instant.ofEpochMilli(T0 - 60_000))
            .setPayload(req)
            .build());
  }

  static ArtefactRef ref(String uri, String format) {
    return ArtefactRef.newBuilder()
        .setUri(uri)
        .setSha256("abc")
        .setBytes(1)
        .setFormat(format)
        .build();
  }

  void misfire(String dep, String prompt, long offsetMs) {
    misfires.pipeInput(
        dep,
        Misfire.newBuilder()
            .setDeploymentId(dep)
            .setRequestId("r-" + prompt + "-" + offsetMs)
            .setPrompt(prompt)
            .setOutput("bad " + prompt)
            .setExpected("good " + prompt)
            .setReason(MisfireReason.WRONG_ANSWER)
            .setTs(Instant.ofEpochMilli(T0 + offsetMs))
            .build());
  }

  void requests(String dep, long n, long offsetMs) {
    traffic.pipeInput(
        dep,
        ServingTraffic.newBuilder()
            .setDeploymentId(dep)
            .setNode("n1")
            .setArtefactSha256("abc")
            .setRequests(n)
            .setIntervalStart(Instant.ofEpochMilli(T0 + offsetMs - 500))
            .setTs(Instant.ofEpochMilli(T0 + offsetMs))
            .build());
  }

  /** One incident: 20 requests, prompts p1, p2, p3 and a repeat of p1 at T0+1s..T0+4s. */
  void incident(String dep, long base, String... prompts) {
    requests(dep, 20, base + 500);
    long t = base + 1000;
    for (String p : prompts) {
      misfire(dep, p, t);
      t += 1000;
    }
  }

  double count(String name, String tag, String value) {
    return metrics.count(name, tag, value);
  }

  TriggerState state(String dep) {
    KeyValueStore<String, TriggerState> s =
        driver.getKeyValueStore(MisfireWindowProcessor.TRIGGERS);
    return s.get(dep);
  }

  MisfireWindow window(String dep, long startOffset) {
    KeyValueStore<String, MisfireWindow> s =
        driver.getKeyValueStore(MisfireWindowProcessor.WINDOWS);
    return s.get(MisfireWindowProcessor.windowKey(dep, T0 + startOffset));
  }

  @Test
  void shouldCountDistinctMisfiresAndRatePerHoppingWindow() throws Exception {
    start(config());
    deploy("d1", Map.of());
    incident("d1", 0, "p1", "p2", "p3", "p1");
    misfire("d1", "p4", 5500); // only in [T0, T0+10s) and [T0+5s, T0+15s); before T0+5s + 1s grace

    MisfireWindow first = window("d1", -5000);
    assertThat(first.misfires()).isEqualTo(3);
    assertThat(first.duplicates()).isEqualTo(1);
    assertThat(first.requests()).isEqualTo(20);
    assertThat(first.rate()).isEqualTo(0.15);
    MisfireWindow second = window("d1", 0);
    assertThat(second.misfires()).isEqualTo(4);
    assertThat(second.rate()).isEqualTo(0.2);
    MisfireWindow third = window("d1", 5000);
    assertThat(third.misfires()).isEqualTo(1);
    assertThat(third.requests()).isZero();
    assertThat(window("d1", 10_000)).isNull();
    assertThat(count("distillery_feedback_misfires", "outcome", "counted")).isEqualTo(4);
    assertThat(count("distillery_feedback_misfires", "outcome", "duplicate")).isEqualTo(1);
    assertThat(runs.isEmpty()).as("no window is judged before its end plus the grace").isTrue();
  }

  @Test
  void shouldStartOneRedistillationRunWithTheWindowsDeduplicatedMisfires() throws Exception {
    start(config());
    deploy("d1", Map.of());
    incident("d1", 0, "p1", "p2", "p3", "p1");
    requests("d1", 100, 12_000); // event time T0+12s: [T0-5s, T0+5s) and [T0, T0+10s) are due

    List<ModelRegistered> started = runs.readValuesToList();
    assertThat(started).hasSize(1);
    ModelRegistered run = started.getFirst();
    assertThat(run.getRunId()).isEqualTo(TriggerPolicy.runId("d1", T0 - 5000));
    assertThat(run.getModelId()).isEqualTo("m1");
    assertThat(run.getUri()).isEqualTo("file:///teacher");
    assertThat(run.getRecipe()).isEqualTo(Files.readString(recipe));
    assertThat(run.getGates())
        .containsEntry("retention", 0.9)
        .containsEntry("misfireImprovement", 0.0);
    assertThat(run.getLabels())
        .containsEntry("deployment", "d1")
        .containsEntry("trigger", "misfires")
        .containsEntry("parentRun", "parent-1")
        .containsEntry("teacherUri", "file:///teacher")
        .containsEntry("studentUri", student.toUri().toString())
        .containsEntry("misfires", "3")
        .containsEntry("misfireRate", "0.150000");
    assertThat(run.getInputs())
        .extracting(ArtefactRef::getFormat)
        .containsExactly("misfires-jsonl", "hf-checkpoint");
    assertThat(run.getInputs().get(1).getUri()).isEqualTo(student.toUri().toString());
    assertThat(run.getInputs().get(1).getSha256()).hasSize(64);

    List<JsonNode> rows = jsonl(run.getInputs().getFirst());
    assertThat(rows).extracting(r -> r.get("prompt").asText()).containsExactly("p1", "p2", "p3");
    assertThat(rows.getFirst().get("output").asText()).isEqualTo("bad p1");
    assertThat(rows.getFirst().get("expected").asText()).isEqualTo("good p1");
    assertThat(rows.getFirst().get("reason").asText()).isEqualTo("WRONG_ANSWER");
    assertThat(rows.getFirst().get("deploymentId").asText()).isEqualTo("d1");
    MisfireDataset split = new MisfireDataset(null, 20);
    assertThat(rows)
        .allSatisfy(
            r ->
                assertThat(r.get("split").asText())
                    .isEqualTo(split.split(r.get("prompt").asText())));

    // the overlapping window [T0, T0+10s) is over the thresholds too: the same incident, cooling
    // down
    assertThat(count("distillery_feedback_triggers", "outcome", "fired")).isEqualTo(1);
    assertThat(count("distillery_feedback_triggers", "outcome", "cool-down")).isEqualTo(1);
    TriggerState s = state("d1");
    assertThat(s.triggers()).extracting(Trigger::runId).containsExactly(run.getRunId());
    assertThat(s.runsToday()).isEqualTo(1);
  }

  static List<JsonNode> jsonl(ArtefactRef ref) throws Exception {
    Path dir = Path.of(URI.create(ref.getUri()));
    List<JsonNode> rows = new ArrayList<>();
    for (String line : Files.readAllLines(dir.resolve(MisfireDataset.FILE))) {
      rows.add(JsonSerde.JSON.readTree(line));
    }
    return rows;
  }

  @Test
  void shouldNotTripBelowEitherThreshold() throws Exception {
    start(config());
    deploy("few", Map.of());
    deploy("diluted", Map.of());
    incident("few", 0, "p1", "p2", "p1", "p2"); // 2 distinct < 3, though rate 0.1
    requests("diluted", 40, 500);
    incident("diluted", 0, "p1", "p2", "p3"); // 3 distinct / 60 requests = 0.05 < 0.1
    requests("few", 1, 30_000);
    requests("diluted", 1, 30_000);

    assertThat(runs.isEmpty()).isTrue();
    assertThat(state("few").closedUpTo())
        .as("windows were judged")
        .isGreaterThanOrEqualTo(T0 + 10_000);
    assertThat(state("diluted").triggers()).isEmpty();
  }

  @Test
  void shouldFireOncePerIncidentThenCoolDownThenStopAtTheDailyCap() throws Exception {
    start(config());
    deploy("d1", Map.of());
    incident("d1", 0, "a1", "a2", "a3"); // incident 1: fires at window [T0-5s, T0+5s)
    incident("d1", 10_000, "b1", "b2", "b3"); // within 20 s of the first trigger: cooling down
    incident("d1", 40_000, "c1", "c2", "c3"); // incident 2: fires at [T0+35s, T0+45s)
    incident("d1", 80_000, "e1", "e2", "e3"); // incident 3: over the daily cap of 2
    requests("d1", 1, 200_000);

    List<ModelRegistered> started = runs.readValuesToList();
    assertThat(started)
        .extracting(ModelRegistered::getRunId)
        .containsExactly(
            TriggerPolicy.runId("d1", T0 - 5000), TriggerPolicy.runId("d1", T0 + 35_000));
    assertThat(jsonl(started.get(1).getInputs().getFirst()))
        .extracting(r -> r.get("prompt").asText())
        .containsExactly("c1", "c2", "c3");
    TriggerState s = state("d1");
    assertThat(s.runsToday()).isEqualTo(2);
    assertThat(s.suppressedByDailyCap()).isEqualTo(2); // both windows of incident 3
    assertThat(count("distillery_feedback_triggers", "outcome", "daily-cap")).isEqualTo(2);
    assertThat(count("distillery_feedback_triggers", "outcome", "cool-down")).isEqualTo(4);
  }

  @Test
  void shouldStartRunsAgainOnTheNextUtcDay() throws Exception {
    start(
        config()
            .withPolicy(
                Duration.ofSeconds(10),
                Duration.ofSeconds(5),
                Duration.ofSeconds(1),
                0.1,
                3,
                Duration.ofSeconds(20),
                1));
    deploy("d1", Map.of());
    incident("d1", 0, "a1", "a2", "a3");
    incident("d1", 40_000, "b1", "b2", "b3"); // capped: one run a day
    long nextDay = (TriggerPolicy.day(T0) + 1) * TriggerPolicy.DAY_MS - T0;
    incident("d1", nextDay + 10_000, "c1", "c2", "c3");
    requests("d1", 1, nextDay + 100_000);

    assertThat(runs.readValuesToList())
        .extracting(ModelRegistered::getRunId)
        .containsExactly(
            TriggerPolicy.runId("d1", T0 - 5000), TriggerPolicy.runId("d1", T0 + nextDay + 5000));
  }

  @Test
  void shouldSendUnknownDeploymentsAndEmptyPromptsToTheDlqAndKeepGoing() throws Exception {
    start(config());
    deploy("d1", Map.of());
    misfire("ghost", "p1", 1000);
    misfire("d1", "  ", 1000);
    incident("d1", 0, "p1", "p2", "p3");
    requests("d1", 1, 12_000);

    List<DeadLetter> letters = dlq.readValuesToList();
    assertThat(letters).hasSize(2);
    assertThat(letters.get(0).getError()).contains("unknown deployment 'ghost'");
    assertThat(letters.get(0).getTopic()).isEqualTo(Topics.MISFIRES);
    assertThat(
            AVRO.serde(Misfire.class)
                .deserializer()
                .deserialize(Topics.MISFIRES, letters.get(0).getValue().array())
                .getPrompt())
        .isEqualTo("p1");
    assertThat(letters.get(1).getError()).contains("empty prompt");
    assertThat(count("distillery_feedback_dropped", "reason", "unknown-deployment")).isEqualTo(1);
    assertThat(count("distillery_feedback_dropped", "reason", "empty-prompt")).isEqualTo(1);
    assertThat(window("d1", -5000).misfires()).isEqualTo(3);
    assertThat(runs.readValuesToList()).hasSize(1);
  }

  @Test
  void shouldNotStartASecondRunWhenTheMisfireTopicIsReplayed() throws Exception {
    start(config());
    deploy("d1", Map.of());
    incident("d1", 0, "p1", "p2", "p3", "p1");
    requests("d1", 1, 12_000);
    assertThat(runs.readValuesToList()).hasSize(1);

    // everything again, from the start, as after an offset reset
    deploy("d1", Map.of());
    incident("d1", 0, "p1", "p2", "p3", "p1");
    requests("d1", 1, 12_000);

    assertThat(runs.isEmpty()).isTrue();
    assertThat(count("distillery_feedback_dropped", "reason", "late")).isEqualTo(4);
    assertThat(window("d1", -5000).misfires()).as("judged windows do not count again").isEqualTo(3);
    assertThat(state("d1").triggers()).hasSize(1);
  }

  @Test
  void shouldJudgeAQuietDeploymentsWindowsOnTheWallClock() throws Exception {
    start(config());
    deploy("d1", Map.of());
    incident("d1", 0, "p1", "p2", "p3");
    assertThat(runs.isEmpty()).isTrue();

    driver.advanceWallClockTime(
        Duration.ofSeconds(6)); // end T0+5s + 1s grace, but not yet + 1 min idle close
    assertThat(runs.isEmpty()).isTrue();
    driver.advanceWallClockTime(Duration.ofSeconds(60));
    assertThat(runs.readValuesToList())
        .extracting(ModelRegistered::getRunId)
        .containsExactly(TriggerPolicy.runId("d1", T0 - 5000));
  }

  @Test
  void shouldRecordAMissingRecipeAsAFailedTriggerWithoutCrashing() throws Exception {
    start(config());
    deploy("d1", Map.of("redistillRecipe", tmp.resolve("gone.yaml").toString()));
    deploy(
        "d2", Map.of("redistillRecipe", "")); // no label: the config default, which is missing too
    incident("d1", 0, "p1", "p2", "p3");
    incident("d2", 0, "p1", "p2", "p3");
    requests("d1", 1, 12_000);
    requests("d2", 1, 12_000);

    assertThat(runs.isEmpty()).isTrue();
    assertThat(count("distillery_feedback_triggers", "outcome", "failed")).isEqualTo(2);
    Trigger t = state("d1").triggers().getFirst();
    assertThat(t.outcome()).isEqualTo(Trigger.Outcome.FAILED);
    assertThat(t.reason()).contains("gone.yaml").contains("does not exist");
    assertThat(state("d2").triggers().getFirst().reason()).contains("no-such-default.yaml");
    // the stream goes on: a later misfire is still counted
    misfire("d1", "p9", 20_000);
    assertThat(window("d1", 15_000).misfires()).isEqualTo(1);
  }

  @Test
  void shouldFallBackToTheDeploymentIdAndThePackagesModelDirWithoutLabels() throws Exception {
    start(config().withRecipe(recipe));
    deploy("d1", Map.of("modelId", "", "student", "", "redistillRecipe", ""));
    incident("d1", 0, "p1", "p2", "p3");
    requests("d1", 1, 12_000);

    ModelRegistered run = runs.readValue();
    assertThat(run.getModelId()).isEqualTo("d1");
    assertThat(run.getRecipeRef()).isEqualTo(recipe.toString());
    assertThat(Path.of(URI.create(run.getInputs().get(1).getUri()))).isEqualTo(student);
  }

  @Test
  void shouldReportWindowsThresholdsCoolDownAndTriggers() throws Exception {
    start(config());
    deploy("d1", Map.of());
    incident("d1", 0, "p1", "p2", "p3", "p1");
    requests("d1", 10, 12_000);
    TriggerPolicy policy = TriggerPolicy.of(config());
    MisfiresReport report =
        new MisfiresReport(
            policy,
            new MisfiresReport.Stores() {
              @Override
              public org.apache.kafka.streams.state.ReadOnlyKeyValueStore<String, DeploymentEvent>
                  deployments() {
                return driver.getKeyValueStore(MisfireWindowProcessor.DEPLOYMENTS);
              }

              @Override
              public org.apache.kafka.streams.state.ReadOnlyKeyValueStore<String, MisfireWindow>
                  windows() {
                return driver.getKeyValueStore(MisfireWindowProcessor.WINDOWS);
              }

              @Override
              public org.apache.kafka.streams.state.ReadOnlyKeyValueStore<String, TriggerState>
                  triggers() {
                return driver.getKeyValueStore(MisfireWindowProcessor.TRIGGERS);
              }
            });

    JsonNode d1 = report.one("d1", T0).orElseThrow();
    assertThat(d1.path("known").asBoolean()).isTrue();
    assertThat(d1.path("parentRun").asText()).isEqualTo("parent-1");
    JsonNode first = d1.path("windows").get(0);
    assertThat(first.path("startMs").asLong()).isEqualTo(T0 - 5000);
    assertThat(first.path("misfires").asLong()).isEqualTo(3);
    assertThat(first.path("duplicates").asLong()).isEqualTo(1);
    assertThat(first.path("rate").asDouble()).isEqualTo(0.15);
    assertThat(first.path("judged").asBoolean()).isTrue();
    assertThat(first.path("overThreshold").asBoolean()).isTrue();
    JsonNode open = d1.path("windows").get(d1.path("windows").size() - 1);
    assertThat(open.path("judged").asBoolean()).isFalse();
    assertThat(open.path("requests").asLong()).isEqualTo(10);
    assertThat(d1.path("coolingDown").asBoolean()).isTrue();
    assertThat(d1.path("coolDownUntil").asText())
        .isEqualTo(Instant.ofEpochMilli(T0 + 25_000).toString());
    assertThat(d1.path("runsToday").asInt()).isEqualTo(1);
    assertThat(d1.path("triggers").get(0).path("runId").asText())
        .isEqualTo(TriggerPolicy.runId("d1", T0 - 5000));
    assertThat(d1.path("triggers").get(0).path("outcome").asText()).isEqualTo("FIRED");
    assertThat(report.one("nobody", T0)).isEmpty();
    JsonNode all = report.all(T0);
    assertThat(all.path("thresholds").path("minMisfires").asLong()).isEqualTo(3);
    assertThat(all.path("deployments")).hasSize(1);
  }
}
