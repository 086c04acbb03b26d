package io.distillery.it;

import static org.assertj.core.api.Assertions.assertThat;

import io.distillery.model.config.LlamaConfig;
import io.distillery.model.config.LlamaTensorNames;
import io.distillery.model.safetensors.Checkpoint;
import io.distillery.model.safetensors.SafetensorsWriter;
import io.distillery.model.safetensors.TensorData;
import io.distillery.model.tokenizer.ByteTokenizer;
import io.distillery.runtime.kafka.KafkaSettings;
import io.distillery.runtime.kafka.TopicAdmin;
import io.distillery.runtime.kafka.Topics;
import io.distillery.runtime.serde.AvroSerde;
import io.distillery.schemas.common.ArtefactRef;
import io.distillery.schemas.deployment.DeploymentActive;
import io.distillery.schemas.deployment.DeploymentEvent;
import io.distillery.schemas.deployment.DeploymentRequested;
import io.distillery.schemas.deployment.RolledBack;
import io.distillery.schemas.misfire.Misfire;
import io.distillery.schemas.misfire.MisfireReason;
import io.distillery.schemas.run.RunState;
import io.distillery.schemas.run.RunStatus;
import io.distillery.schemas.run.StageState;
import io.distillery.schemas.serving.ServingTraffic;
import java.net.URI;
import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.UUID;
import java.util.function.Predicate;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * The deployer worker's rollout on the real broker and registry, with the planner. The test itself
 * plays the serving node of each deployment (the real one is issue 6's services/serving): it reads
 * DeploymentRequested and answers DeploymentActive, ServingTraffic and Misfire events over the
 * broker.
 */
class DeployerIT {

  static Cluster.Services services;
  static Path model;
  static KafkaProducer<String, byte[]> producer;

  DeploymentLog log;

  @BeforeAll
  static void start() throws Exception {
    services = Cluster.services(true, "deployer-it", "deployer");
    model = tinyLlama(Cluster.newDir("tiny-llama"));
    KafkaSettings kafka = Cluster.kafka();
    try (TopicAdmin admin = new TopicAdmin(kafka)) {
      admin.ensure(List.of(Topics.SERVING_TRAFFIC), Map.of());
    }
    producer =
        new KafkaProducer<>(
            kafka.producer("deployer-it-node"), new StringSerializer(), new ByteArraySerializer());
  }

  @AfterAll
  static void stop() {
    producer.close();
    services.close();
  }

  @BeforeEach
  void openLog() {
    log = new DeploymentLog();
  }

  @AfterEach
  void closeLog() {
    log.close();
  }

  /**
   * A tiny Llama directory: config, random weights, the byte tokenizer (the deployer never runs
   * it).
   */
  static Path tinyLlama(Path dir) throws Exception {
    LlamaConfig cfg =
        LlamaConfig.builder()
            .vocabSize(ByteTokenizer.VOCAB_SIZE)
            .hiddenSize(32)
            .intermediateSize(64)
            .numHiddenLayers(1)
            .numAttentionHeads(4)
            .numKeyValueHeads(2)
            .maxPositionEmbeddings(128)
            .build();
    Map<String, TensorData> tensors = new LinkedHashMap<>();
    java.util.Random r = new java.util.Random(5);
    for (Map.Entry<String, long[]> e : LlamaTensorNames.shapes(cfg).entrySet()) {
      float[] v =
          new float
              [Math.toIntExact(java.util.Arrays.stream(e.getValue()).reduce(1, (a, b) -> a * b))];
      for (int i = 0; i < v.length; i++) {
        v[i] = (float) (r.nextGaussian() * 0.05);
      }
      tensors.put(e.getKey(), TensorData.ofFloats(e.getValue(), v));
    }
    SafetensorsWriter.write(dir.resolve(Checkpoint.SINGLE_FILE), tensors, Map.of("format", "pt"));
    cfg.write(dir);
    ByteTokenizer.instance().save(dir);
    return dir;
  }

  static String deployRun(String deployParams) throws Exception {
    var reg =
        Cluster.cli(
            "register",
            "--model",
            model.toString(),
            "--recipe",
            Cluster.recipe(
                    """
        name: deploy
        stages:
          deploy: { stage: deployer, retries: 1, params: %s }
        """
                        .formatted(deployParams))
                .toString());
    assertThat(reg.code()).as(reg.err()).isZero();
    return reg.out().trim();
  }

  static StageState stage(RunState r, String node) {
    return r.getStages().stream().filter(s -> s.getNode().equals(node)).findFirst().orElseThrow();
  }

  static void publish(String topic, String key, Object value) throws Exception {
    byte[] bytes =
        switch (value) {
          case DeploymentEvent e ->
              Cluster.kafka().serde(DeploymentEvent.class).serialize(topic, e);
          case ServingTraffic t -> Cluster.kafka().serde(ServingTraffic.class).serialize(topic, t);
          case Misfire m -> Cluster.kafka().serde(Misfire.class).serialize(topic, m);
          default -> throw new IllegalArgumentException(value.toString());
        };
    producer.send(new ProducerRecord<>(topic, key, bytes)).get();
  }

  /** The serving node's answer: it has loaded the requested package at the requested share. */
  static void answerActive(String deployment, DeploymentEvent request) throws Exception {
    DeploymentRequested r = (DeploymentRequested) request.getPayload();
    publish(
        Topics.DEPLOYMENTS,
        deployment,
        DeploymentEvent.newBuilder()
            .setDeploymentId(deployment)
            .setRunId(request.getRunId())
            .setTs(Instant.now())
            .setPayload(
                DeploymentActive.newBuilder()
                    .setNode("it-node")
                    .setUrl("http://127.0.0.1:1/v1/completions")
                    .setArtefactSha256(r.getArtefact().getSha256())
                    .setCanaryPercent(r.getCanaryPercent())
                    .build())
            .build());
  }

  static void traffic(String deployment, String sha, long requests, long errors, long misfires)
      throws Exception {
    Instant now = Instant.now();
    publish(
        Topics.SERVING_TRAFFIC,
        deployment,
        ServingTraffic.newBuilder()
            .setDeploymentId(deployment)
            .setNode("it-node")
            .setArtefactSha256(sha)
            .setRequests(requests)
            .setErrors(errors)
            .setMisfires(misfires)
            .setIntervalStart(now.minusMillis(300))
            .setTs(now)
            .build());
  }

  static Predicate<DeploymentEvent> requested(String runId, int percent) {
    return e ->
        e.getRunId().equals(runId)
            && e.getPayload() instanceof DeploymentRequested r
            && r.getCanaryPercent() == percent;
  }

  /** Deploys the model at 100% and answers for the node; returns the package now stable. */
  ArtefactRef deployStable(String deployment) throws Exception {
    String runId = deployRun("{ deployment: %s, activeTimeoutSeconds: 60 }".formatted(deployment));
    DeploymentEvent req = log.await(deployment, requested(runId, 100), Duration.ofSeconds(60));
    answerActive(deployment, req);
    RunState done =
        Cluster.awaitRun(runId, s -> s.getStatus() != RunStatus.RUNNING, Duration.ofSeconds(60));
    assertThat(done.getStatus())
        .as(String.valueOf(done.getReason()))
        .isEqualTo(RunStatus.SUCCEEDED);
    return ((DeploymentRequested) req.getPayload()).getArtefact();
  }

  @Test
  void shouldCompleteAFullRolloutWhenTheServingNodeAnswersActive() throws Exception {
    String deployment = "it-full-" + UUID.randomUUID().toString().substring(0, 8);
    String runId = deployRun("{ deployment: %s, activeTimeoutSeconds: 60 }".formatted(deployment));
    DeploymentEvent req = log.await(deployment, requested(runId, 100), Duration.ofSeconds(60));
    DeploymentRequested r = (DeploymentRequested) req.getPayload();
    assertThat(r.getTarget()).isEqualTo("local");
    assertThat(r.getPrevious()).isNull();
    assertThat(r.getTeacher()).isNotNull();
    assertThat(r.getLabels())
        .containsEntry("runId", runId)
        .containsEntry("redistillRecipe", "recipes/redistill.yaml")
        .containsEntry("teacher", r.getTeacher().getUri());
    Path pkg = Path.of(URI.create(r.getArtefact().getUri()));
    assertThat(r.getArtefact().getFormat()).isEqualTo("djl-serving");
    assertThat(pkg.resolve("model/config.json")).exists();
    assertThat(pkg.resolve("model/tokenizer.json")).exists();
    assertThat(pkg.resolve("gpu/serving.properties"))
        .content()
        .contains("option.entryPoint=djl_python.lmi_vllm.vllm_async_service");
    assertThat(pkg.resolve("k8s/deployment.yaml")).content().contains("nvidia.com/gpu: 1");
    assertThat(Path.of(URI.create(r.getLabels().get("student")))).isEqualTo(pkg.resolve("model"));

    answerActive(deployment, req);
    RunState done =
        Cluster.awaitRun(runId, s -> s.getStatus() != RunStatus.RUNNING, Duration.ofSeconds(60));
    assertThat(done.getStatus())
        .as(String.valueOf(done.getReason()))
        .isEqualTo(RunStatus.SUCCEEDED);
    StageState deploy = stage(done, "deploy");
    assertThat(deploy.getOutputs())
        .singleElement()
        .satisfies(
            a -> {
              assertThat(a.getFormat()).isEqualTo("djl-serving");
              assertThat(a.getSha256()).isEqualTo(r.getArtefact().getSha256());
            });
    assertThat(deploy.getMetrics())
        .containsEntry("nodes", 1.0)
        .containsEntry("canaryRequests", 0.0);
  }

  @Test
  void shouldRollBackACanaryThatMisfiresMuchMoreAndRejectTheRun() throws Exception {
    String deployment = "it-canary-" + UUID.randomUUID().toString().substring(0, 8);
    ArtefactRef stable = deployStable(deployment);

    String runId =
        deployRun(
            ("{ deployment: %s, canaryPercent: 20, canaryWindowSeconds: 60, canaryMinRequests: 30,"
                    + " rollbackMargin: 0.1, activeTimeoutSeconds: 60 }")
                .formatted(deployment));
    DeploymentEvent req = log.await(deployment, requested(runId, 20), Duration.ofSeconds(60));
    DeploymentRequested canary = (DeploymentRequested) req.getPayload();
    assertThat(canary.getPrevious()).isEqualTo(stable);
    String canarySha = canary.getArtefact().getSha256();
    assertThat(canarySha).isNotEqualTo(stable.getSha256());

    answerActive(deployment, req);
    traffic(deployment, stable.getSha256(), 160, 0, 4); // 4 / 160 = 0.025
    traffic(deployment, canarySha, 20, 1, 8);
    for (int i = 0; i < 12; i++) {
      publish(
          Topics.MISFIRES,
          deployment,
          Misfire.newBuilder()
              .setDeploymentId(deployment)
              .setNode("it-node")
              .setArtefactSha256(canarySha)
              .setRequestId("q" + i)
              .setPrompt("12+" + i + "=")
              .setOutput("?")
              .setExpected(Integer.toString(12 + i))
              .setReason(MisfireReason.WRONG_ANSWER)
              .setTs(Instant.now())
              .build());
    }
    traffic(deployment, canarySha, 20, 0, 4); // canary: (12 + 1) / 40 = 0.325 > 0.025 + 0.1

    DeploymentEvent rolledBack =
        log.await(
            deployment,
            e -> e.getRunId().equals(runId) && e.getPayload() instanceof RolledBack,
            Duration.ofSeconds(60));
    RolledBack rb = (RolledBack) rolledBack.getPayload();
    assertThat(rb.getRestored()).isEqualTo(stable);
    assertThat(rb.getReason())
        .contains(deployment)
        .contains("0.3250 (13/40)")
        .contains("0.0250 (4/160)");

    RunState done =
        Cluster.awaitRun(runId, s -> s.getStatus() != RunStatus.RUNNING, Duration.ofSeconds(60));
    assertThat(done.getStatus()).isEqualTo(RunStatus.REJECTED);
    assertThat(done.getReason()).contains("rejected the candidate").contains("rolled back");
    assertThat(done.getVerdict()).startsWith("REJECTED");
    assertThat(log.seen(deployment)).as("never promoted").noneMatch(requested(runId, 100));
  }

  @Test
  void shouldFailRetryablyNamingTheDeploymentWhenNoServingNodeAnswers() throws Exception {
    String deployment = "it-silent-" + UUID.randomUUID().toString().substring(0, 8);
    String runId = deployRun("{ deployment: %s, activeTimeoutSeconds: 2 }".formatted(deployment));
    RunState done =
        Cluster.awaitRun(runId, s -> s.getStatus() != RunStatus.RUNNING, Duration.ofSeconds(60));
    assertThat(done.getStatus()).isEqualTo(RunStatus.FAILED);
    assertThat(done.getReason()).contains("no serving node answered for deployment " + deployment);
    assertThat(stage(done, "deploy").getAttempt())
        .as("retried: the failure is retryable")
        .isEqualTo(2);
    assertThat(log.seen(deployment)).filteredOn(requested(runId, 100)).hasSize(2);
  }

  /** Everything on distillery.deployments from the beginning, read on demand. */
  static final class DeploymentLog implements AutoCloseable {
    private final AvroSerde<DeploymentEvent> serde = Cluster.kafka().serde(DeploymentEvent.class);
    private final KafkaConsumer<String, byte[]> consumer;
    private final List<DeploymentEvent> events = new ArrayList<>();

    DeploymentLog() {
      consumer = new KafkaConsumer<>(Cluster.kafka().consumer(null, "deployer-it-log"));
      List<TopicPartition> parts =
          consumer.partitionsFor(Topics.DEPLOYMENTS).stream()
              .map(p -> new TopicPartition(p.topic(), p.partition()))
              .toList();
      consumer.assign(parts);
      consumer.seekToBeginning(parts);
    }

    DeploymentEvent await(String deployment, Predicate<DeploymentEvent> until, Duration timeout) {
      long deadline = System.nanoTime() + timeout.toNanos();
      int checked = 0;
      while (true) {
        for (; checked < events.size(); checked++) {
          DeploymentEvent e = events.get(checked);
          if (e.getDeploymentId().equals(deployment) && until.test(e)) {
            return e;
          }
        }
        if (System.nanoTime() > deadline) {
          throw new AssertionError(
              "no matching event for deployment "
                  + deployment
                  + " in "
                  + timeout
                  + "; seen: "
                  + seen(deployment));
        }
        for (ConsumerRecord<String, byte[]> r : consumer.poll(Duration.ofMillis(100))) {
          events.add(serde.deserialize(r.topic(), r.value()));
        }
      }
    }

    List<DeploymentEvent> seen(String deployment) {
      for (ConsumerRecord<String, byte[]> r : consumer.poll(Duration.ofMillis(200))) {
        events.add(serde.deserialize(r.topic(), r.value()));
      }
      return events.stream().filter(e -> e.getDeploymentId().equals(deployment)).toList();
    }

    @Override
    public void close() {
      consumer.close();
    }
  }
}
