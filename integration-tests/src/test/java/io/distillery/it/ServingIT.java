package io.distillery.it;

import static org.assertj.core.api.Assertions.assertThat;

import io.distillery.model.config.LlamaConfig;
import io.distillery.model.llama.LlamaModel;
import io.distillery.model.safetensors.DType;
import io.distillery.model.tokenizer.ByteTokenizer;
import io.distillery.runtime.artefact.FileArtefactStore;
import io.distillery.runtime.kafka.Topics;
import io.distillery.runtime.serde.AvroSerde;
import io.distillery.runtime.service.ServicePlugin;
import io.distillery.schemas.common.ArtefactRef;
import io.distillery.schemas.deployment.DeploymentActive;
import io.distillery.schemas.deployment.DeploymentEvent;
import io.distillery.schemas.deployment.DeploymentRequested;
import io.distillery.schemas.misfire.Misfire;
import io.distillery.schemas.misfire.MisfireReason;
import io.distillery.schemas.serving.ServingTraffic;
import io.distillery.serving.ServingConfig;
import io.distillery.serving.ServingMain;
import io.vertx.core.Vertx;
import io.vertx.core.json.JsonObject;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.ServiceLoader;
import java.util.UUID;
import java.util.function.Predicate;
import org.apache.avro.specific.SpecificRecord;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.junit.jupiter.api.Test;

/**
 * A serving node on the real broker and registry: a DeploymentRequested for a package made here is
 * loaded and announced with DeploymentActive, completions are answered over HTTP, a {@code verify}
 * mismatch arrives on {@code distillery.misfires}, traffic counts on {@code
 * distillery.serving.traffic}, and a restarted node restores the stable artefact by replaying the
 * deployments topic.
 */
class ServingIT {

  static final HttpClient HTTP = HttpClient.newHttpClient();

  @Test
  void shouldLoadARequestedDeploymentAnswerOverHttpAndPublishMisfiresAndTraffic() throws Exception {
    String deployment = "chat-" + UUID.randomUUID().toString().substring(0, 8);
    FileArtefactStore store = new FileArtefactStore(Cluster.store());
    ArtefactRef pkg = store.put(packageDir(7), "djl-serving", true);
    ServingConfig config =
        ServingConfig.of(Cluster.bootstrap(), Cluster.registry(), Cluster.store())
            .withNodeId("it-serving")
            .withDeployments(List.of(deployment))
            .withConfidenceThreshold(Double.NEGATIVE_INFINITY)
            .withTiming(Duration.ofSeconds(30), 300);

    try (ServingMain node = ServingMain.start(config, null)) {
      publish(deployment, pkg);

      DeploymentActive active =
          await(
                          Topics.DEPLOYMENTS,
                          DeploymentEvent.class,
                          e ->
                              e.getDeploymentId().equals(deployment)
                                  && e.getPayload() instanceof DeploymentActive,
                          Duration.ofSeconds(60))
                      .getPayload()
                  instanceof DeploymentActive a
              ? a
              : null;
      assertThat(active).isNotNull();
      assertThat(active.getArtefactSha256()).isEqualTo(pkg.getSha256());
      assertThat(active.getNode()).isEqualTo("it-serving");
      assertThat(active.getUrl()).isEqualTo(node.node().url());
      assertThat(active.getCanaryPercent()).isEqualTo(100);

      JsonObject reply =
          complete(
              active.getUrl(),
              new JsonObject()
                  .put("model", deployment)
                  .put("prompt", "12+30=")
                  .put("max_tokens", 4)
                  .put("verify", "42"));
      String answer = reply.getJsonArray("choices").getJsonObject(0).getString("text");
      assertThat(answer).isNotEqualTo("42"); // a random model
      assertThat(reply.getJsonObject("distillery").getString("artefactSha256"))
          .isEqualTo(pkg.getSha256());

      Misfire misfire =
          await(
              Topics.MISFIRES,
              Misfire.class,
              m -> m.getRequestId().equals(reply.getString("id")),
              Duration.ofSeconds(30));
      assertThat(misfire.getReason()).isEqualTo(MisfireReason.WRONG_ANSWER);
      assertThat(misfire.getDeploymentId()).isEqualTo(deployment);
      assertThat(misfire.getArtefactSha256()).isEqualTo(pkg.getSha256());
      assertThat(misfire.getPrompt()).isEqualTo("12+30=");
      assertThat(misfire.getOutput()).isEqualTo(answer);
      assertThat(misfire.getExpected()).isEqualTo("42");

      ServingTraffic traffic =
          await(
              Topics.SERVING_TRAFFIC,
              ServingTraffic.class,
              t -> t.getDeploymentId().equals(deployment) && t.getRequests() > 0,
              Duration.ofSeconds(30));
      assertThat(traffic.getArtefactSha256()).isEqualTo(pkg.getSha256());
      assertThat(traffic.getNode()).isEqualTo("it-serving");
      assertThat(traffic.getIntervalStart()).isBeforeOrEqualTo(traffic.getTs());
      // the misfire is counted in the interval in which it was recorded (the same one, or the next)
      ServingTraffic withMisfire =
          await(
              Topics.SERVING_TRAFFIC,
              ServingTraffic.class,
              t -> t.getDeploymentId().equals(deployment) && t.getMisfires() > 0,
              Duration.ofSeconds(30));
      assertThat(withMisfire.getMisfires()).isEqualTo(1);
    }

    // a restarted node replays distillery.deployments and serves the current stable artefact again
    try (ServingMain restarted = ServingMain.start(config.withNodeId("it-serving-2"), null)) {
      long deadline = System.nanoTime() + Duration.ofSeconds(60).toNanos();
      while (restarted.node().routing(deployment) == null && System.nanoTime() < deadline) {
        Thread.sleep(50);
      }
      assertThat(restarted.node().routing(deployment)).isNotNull();
      assertThat(restarted.node().routing(deployment).stable().sha256()).isEqualTo(pkg.getSha256());
      JsonObject again =
          complete(
              restarted.node().url(),
              new JsonObject().put("prompt", "12+30=").put("max_tokens", 4));
      assertThat(again.getJsonArray("choices").getJsonObject(0).getString("text")).isNotNull();
    }
  }

  @Test
  void shouldStartAsAServicePluginAndWriteItsUrlToTheRunDirectory() throws Exception {
    ServicePlugin plugin =
        ServiceLoader.load(ServicePlugin.class).stream()
            .map(ServiceLoader.Provider::get)
            .filter(p -> p.name().equals("serving"))
            .findFirst()
            .orElseThrow();
    Path runDir = Cluster.newDir("serving-run");
    Vertx vertx = Vertx.vertx();
    try (AutoCloseable running =
        plugin.start(
            new ServicePlugin.Environment(
                Cluster.bootstrap(), Cluster.registry(), runDir, Cluster.store(), vertx))) {
      JsonObject info = new JsonObject(Files.readString(runDir.resolve("serving.json")));
      assertThat(info.getJsonArray("deployments").getList()).containsExactly("*");
      HttpResponse<String> health =
          HTTP.send(
              HttpRequest.newBuilder(URI.create(info.getString("url") + "/health")).build(),
              HttpResponse.BodyHandlers.ofString());
      assertThat(health.statusCode())
          .isIn(200, 503); // 200 once it has restored a deployment from the topic
      assertThat(new JsonObject(health.body()).getJsonArray("hosts").getList())
          .containsExactly("*");
    } finally {
      vertx.close();
    }
    assertThat(runDir.resolve("serving.json")).doesNotExist();
  }

  /**
   * A deployer-style package: {@code model/} with a tiny byte-level Llama checkpoint and its
   * tokenizer.
   */
  static Path packageDir(long seed) throws Exception {
    Path pkg = Cluster.newDir("serving-package");
    Path model = Files.createDirectories(pkg.resolve("model"));
    LlamaConfig cfg =
        LlamaConfig.builder()
            .vocabSize(ByteTokenizer.VOCAB_SIZE)
            .hiddenSize(32)
            .intermediateSize(64)
            .numHiddenLayers(2)
            .numAttentionHeads(4)
            .numKeyValueHeads(2)
            .maxPositionEmbeddings(128)
            .build();
    try (LlamaModel m = LlamaModel.random(cfg, seed)) {
      m.save(model, DType.F32);
    }
    ByteTokenizer.instance().save(model);
    Files.writeString(pkg.resolve("serving.properties"), "engine=PyTorch\noption.model_id=model\n");
    return pkg;
  }

  static void publish(String deployment, ArtefactRef pkg) throws Exception {
    AvroSerde<DeploymentEvent> serde = Cluster.kafka().serde(DeploymentEvent.class);
    Map<String, Object> p = Cluster.kafka().producer("it-deployer");
    p.put("key.serializer", StringSerializer.class);
    p.put("value.serializer", ByteArraySerializer.class);
    DeploymentEvent event =
        DeploymentEvent.newBuilder()
            .setDeploymentId(deployment)
            .setRunId("run-it")
            .setTs(Instant.now())
            .setPayload(
                DeploymentRequested.newBuilder()
                    .setArtefact(pkg)
                    .setTarget("local")
                    .setCanaryPercent(100)
                    .setPrevious(null)
                    .setTeacher(null)
                    .setLabels(Map.of("runId", "run-it"))
                    .build())
            .build();
    try (KafkaProducer<String, byte[]> producer = new KafkaProducer<>(p)) {
      producer
          .send(
              new ProducerRecord<>(
                  Topics.DEPLOYMENTS, deployment, serde.serialize(Topics.DEPLOYMENTS, event)))
          .get();
    }
  }

  static JsonObject complete(String url, JsonObject body) throws Exception {
    HttpResponse<String> r =
        HTTP.send(
            HttpRequest.newBuilder(URI.create(url + "/v1/completions"))
                .timeout(Duration.ofSeconds(60))
                .POST(HttpRequest.BodyPublishers.ofString(body.encode()))
                .build(),
            HttpResponse.BodyHandlers.ofString());
    assertThat(r.statusCode()).as(r.body()).isEqualTo(200);
    return new JsonObject(r.body());
  }

  /** Reads {@code topic} from the beginning until a value matches, or fails at the deadline. */
  static <T extends SpecificRecord> T await(
      String topic, Class<T> type, Predicate<T> until, Duration timeout) {
    AvroSerde<T> serde = Cluster.kafka().serde(type);
    try (KafkaConsumer<String, byte[]> c =
        new KafkaConsumer<>(Cluster.kafka().consumer(null, "it-serving-await"))) {
      List<TopicPartition> parts = new ArrayList<>();
      long deadline = System.nanoTime() + timeout.toNanos();
      while (parts.isEmpty() && System.nanoTime() < deadline) {
        c.partitionsFor(topic)
            .forEach(p -> parts.add(new TopicPartition(p.topic(), p.partition())));
      }
      c.assign(parts);
      c.seekToBeginning(parts);
      List<T> seen = new ArrayList<>();
      while (System.nanoTime() < deadline) {
        for (ConsumerRecord<String, byte[]> r : c.poll(Duration.ofMillis(100))) {
          T value = serde.deserialize(r.topic(), r.value());
          if (until.test(value)) {
            return value;
          }
          seen.add(value);
        }
      }
      throw new AssertionError(
          "no matching "
              + type.getSimpleName()
              + " on "
              + topic
              + " in "
              + timeout
              + "; saw "
              + seen.size()
              + " others");
    }
  }
}
