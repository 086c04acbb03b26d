package io.distillery.cli;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import com.sun.net.httpserver.HttpServer;
import io.distillery.runtime.kafka.KafkaSettings;
import io.distillery.runtime.kafka.Topics;
import io.distillery.schemas.common.ArtefactRef;
import io.distillery.schemas.run.RunState;
import io.distillery.schemas.run.RunStatus;
import io.distillery.schemas.run.StageState;
import io.distillery.schemas.run.StageStatus;
import io.distillery.stack.EmbeddedKafka;
import java.io.ByteArrayOutputStream;
import java.io.PrintWriter;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicInteger;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * {@code distillery status <runId>} against an in-process broker and a stand-in registry, through
 * {@link Main} with writers that do not flush by themselves (as {@code System.out} behind {@code
 * main} does not for {@code print}).
 */
class StatusCommandTest {

  static final String RUN = "6f1c0f4e-0000-3000-8000-00000000abcd";
  static EmbeddedKafka kafka;
  static HttpServer registry;
  static String registryUrl;

  @BeforeAll
  static void start() throws Exception {
    registry = fakeRegistry();
    registryUrl = "http://127.0.0.1:" + registry.getAddress().getPort();
    kafka = EmbeddedKafka.start();
    try (Admin admin = Admin.create(Map.of("bootstrap.servers", kafka.bootstrapServers()))) {
      admin.createTopics(List.of(new NewTopic(Topics.RUNS, 1, (short) 1))).all().get();
    }
    KafkaSettings settings = KafkaSettings.of(kafka.bootstrapServers(), registryUrl);
    try (KafkaProducer<String, byte[]> producer =
        new KafkaProducer<>(settings.producer("status-test"), null, new ByteArraySerializer())) {
      producer
          .send(
              new ProducerRecord<>(
                  Topics.RUNS,
                  RUN,
                  settings.serde(RunState.class).serialize(Topics.RUNS, failedRun())))
          .get();
    }
  }

  @AfterAll
  static void stop() {
    if (kafka != null) {
      kafka.close();
    }
    registry.stop(0);
  }

  static RunState failedRun() {
    ArtefactRef model =
        ArtefactRef.newBuilder()
            .setUri("file:///m")
            .setSha256("ab".repeat(32))
            .setBytes(1)
            .setFormat("hf-safetensors")
            .build();
    StageState prune =
        StageState.newBuilder()
            .setNode("prune")
            .setStage("pruner")
            .setStatus(StageStatus.FAILED)
            .setReason("out of memory")
            .build();
    return RunState.newBuilder()
        .setRunId(RUN)
        .setModelId("tiny")
        .setModel(model)
        .setRecipeName("prune-only")
        .setRecipe("{}")
        .setStatus(RunStatus.FAILED)
        .setReason("stage prune failed")
        .setStages(List.of(prune))
        .setCreatedAt(Instant.ofEpochMilli(1_000))
        .setUpdatedAt(Instant.ofEpochMilli(2_000))
        .build();
  }

  record Result(int code, String out, String err) {}

  static Result status(String... extra) {
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    ByteArrayOutputStream err = new ByteArrayOutputStream();
    List<String> args =
        new ArrayList<>(
            List.of(
                "status", RUN, "--bootstrap", kafka.bootstrapServers(), "--registry", registryUrl));
    args.addAll(List.of(extra));
    int code =
        Main.execute(new PrintWriter(out), new PrintWriter(err), args.toArray(String[]::new));
    return new Result(
        code, out.toString(StandardCharsets.UTF_8), err.toString(StandardCharsets.UTF_8));
  }

  @Test
  void shouldPrintTheRunWhenAskedForItsStatus() {
    Result r = status();

    assertThat(r.code()).as(r.err()).isZero();
    assertThat(r.out()).contains(RUN.substring(0, 8)).contains("FAILED").contains("prune");
  }

  @Test
  void shouldPrintTheRunAsJsonWithJson() throws Exception {
    Result r = status("--json");

    assertThat(r.code()).as(r.err()).isZero();
    JsonNode json = new ObjectMapper().readTree(r.out());
    assertThat(json.path("runId").asText()).isEqualTo(RUN);
    assertThat(json.path("status").asText()).isEqualTo("FAILED");
  }

  /**
   * Registers any schema under the next id and hands it back by id: the two calls the serde makes.
   */
  static HttpServer fakeRegistry() throws Exception {
    ObjectMapper json = new ObjectMapper();
    Map<Integer, String> schemas = new ConcurrentHashMap<>();
    AtomicInteger next = new AtomicInteger(1);
    HttpServer server = HttpServer.create(new InetSocketAddress("127.0.0.1", 0), 0);
    server.createContext(
        "/",
        ex -> {
          ObjectNode reply = json.createObjectNode();
          String path = ex.getRequestURI().getPath();
          if (ex.getRequestMethod().equals("POST")) {
            String schema = json.readTree(ex.getRequestBody()).path("schema").asText();
            int id =
                schemas.entrySet().stream()
                    .filter(e -> e.getValue().equals(schema))
                    .map(Map.Entry::getKey)
                    .findFirst()
                    .orElseGet(
                        () -> {
                          int n = next.getAndIncrement();
                          schemas.put(n, schema);
                          return n;
                        });
            reply.put("id", id);
          } else if (path.startsWith("/schemas/ids/")) {
            reply.put(
                "schema", schemas.get(Integer.parseInt(path.substring("/schemas/ids/".length()))));
          }
          byte[] body = json.writeValueAsBytes(reply);
          ex.sendResponseHeaders(200, body.length);
          ex.getResponseBody().write(body);
          ex.close();
        });
    server.start();
    return server;
  }
}
