package io.distillery.it;

import static org.assertj.core.api.Assertions.assertThat;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import io.distillery.cli.RunsPage;
import io.distillery.model.llama.LlamaModel;
import io.distillery.model.safetensors.DType;
import io.distillery.model.tasks.TaskExample;
import io.distillery.model.tasks.TaskJsonl;
import io.distillery.model.tokenizer.ByteTokenizer;
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
import io.distillery.schemas.serving.ServingTraffic;
import io.vertx.core.Vertx;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.UUID;
import java.util.concurrent.TimeUnit;
import org.apache.avro.specific.SpecificRecord;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.junit.jupiter.api.Test;

/**
 * The runs page of {@code distillery up} in a real headless browser: Debian's chromium ({@code
 * /usr/bin/chromium}) driven by playwright-core from {@code integration-tests/browser} (installed
 * by {@code npm ci}, never with a downloaded browser). A small run (a quantized and a pruned
 * candidate fanning into the evaluator) runs on the real broker with the planner and workers, and a
 * deployment's history (a canary rolled back, traffic and misfires) is written to the deployment
 * topics; {@code runs-page.test.mjs} waits for the page to show the run SUCCEEDED with one SVG node
 * per stage, the evaluation report's chart and link, and the deployment's rollback and misfire
 * plot, and saves {@code target/runs-page.png}. Skipped, with the reason, where chromium, node or
 * the npm packages are missing.
 */
class RunsPageBrowserIT {

  static final Path CHROMIUM = Path.of("/usr/bin/chromium");
  static final Path BROWSER_DIR = Path.of("browser").toAbsolutePath();
  static final Path SCREENSHOT = Path.of("target", "runs-page.png").toAbsolutePath();

  static final String RECIPE =
      """
      name: browser-evaluate
      timeout: 5m
      stages:
        w8:     { stage: quantizer, params: { scheme: w8-rtn } }
        sparse: { stage: pruner, params: { method: magnitude, sparsity: 0.9 } }
        eval:   { stage: evaluator, after: [w8, sparse], params: { gates: { retention: 0.9 }, latencyRuns: 2, decodeTokens: 4 } }
      """;

  @Test
  void shouldShowTheSucceededRunAsAGraphWithItsReportAndTheDeploymentsInChromium()
      throws Exception {
    assumeTrue(
        Files.isExecutable(CHROMIUM),
        "runs page browser test skipped: "
            + CHROMIUM
            + " is missing (apt-get install -y chromium; .ci/run installs it)");
    assumeTrue(nodeVersion() != null, "runs page browser test skipped: node is not on the PATH");
    assumeTrue(
        Files.isDirectory(BROWSER_DIR.resolve("node_modules/playwright-core")),
        "runs page browser test skipped: playwright-core is not installed (cd integration-tests/browser && npm ci)");

    Path model = copyTeacher();
    String deployment = "browser-it-" + UUID.randomUUID().toString().substring(0, 8);
    Vertx vertx = Vertx.vertx();
    try (Cluster.Services services =
            Cluster.services(true, "browser", "quantizer", "pruner", "evaluator");
        RunsPage page = new RunsPage(vertx, Cluster.kafka(), 0, Cluster.store())) {
      Path recipe = Cluster.recipe(RECIPE);
      var reg =
          Cluster.cli(
              "register",
              "--model",
              model.toString(),
              "--recipe",
              recipe.toString(),
              "--model-id",
              "copy-teacher");
      assertThat(reg.code()).as(reg.err()).isZero();
      String runId = reg.out().trim();
      writeDeploymentHistory(deployment);

      RunState done =
          Cluster.awaitRun(runId, r -> r.getStatus() != RunStatus.RUNNING, Duration.ofMinutes(5));
      assertThat(done.getStatus())
          .as(String.valueOf(done.getReason()))
          .isEqualTo(RunStatus.SUCCEEDED);

      Files.createDirectories(SCREENSHOT.getParent());
      Files.deleteIfExists(SCREENSHOT);
      Path log = Files.createTempFile(SCREENSHOT.getParent(), "runs-page-browser", ".log");
      Process node =
          new ProcessBuilder(
                  "node",
                  "runs-page.test.mjs",
                  "http://127.0.0.1:" + page.port() + "/",
                  runId,
                  "w8,sparse,eval",
                  SCREENSHOT.toString(),
                  deployment)
              .directory(BROWSER_DIR.toFile())
              .redirectErrorStream(true)
              .redirectOutput(log.toFile())
              .start();
      boolean exited = node.waitFor(4, TimeUnit.MINUTES);
      if (!exited) {
        node.destroyForcibly();
      }
      String output = Files.readString(log, StandardCharsets.UTF_8);
      assertThat(exited).as("the browser test did not finish in 4 minutes: " + output).isTrue();
      assertThat(node.exitValue()).as(output).isZero();
      assertThat(output)
          .contains("run " + runId + " SUCCEEDED on the page", "nodes w8,sparse,eval");
      assertThat(SCREENSHOT).isNotEmptyFile();
    } finally {
      vertx.close().toCompletionStage().toCompletableFuture().get(10, TimeUnit.SECONDS);
    }
  }

  static String nodeVersion() {
    try {
      Process p = new ProcessBuilder("node", "--version").redirectErrorStream(true).start();
      String v = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8).trim();
      return p.waitFor(20, TimeUnit.SECONDS) && p.exitValue() == 0 ? v : null;
    } catch (java.io.IOException | InterruptedException e) {
      return null;
    }
  }

  /** A 26-prompt copy teacher with its tokenizer and eval split, as the evaluator IT uses. */
  static Path copyTeacher() throws Exception {
    Path model = Cluster.newDir("browser-teacher");
    List<TaskExample> examples = new ArrayList<>();
    for (char c = 'a'; c <= 'z'; c++) {
      examples.add(new TaskExample("copy", "c:" + c + "=", String.valueOf(c)));
    }
    try (LlamaModel teacher = TinyCopyTeacher.memorise(examples)) {
      teacher.save(model, DType.F32);
    }
    ByteTokenizer.instance().save(model);
    TaskJsonl.write(model.resolve("test.jsonl"), examples);
    return model;
  }

  /**
   * Nine minutes of a deployment: a stable package, a 20% canary that misfires more and is rolled
   * back, one serving node's traffic per minute and a few misfires per minute (never enough to trip
   * any feedback threshold).
   */
  static void writeDeploymentHistory(String deployment) throws Exception {
    long start = (System.currentTimeMillis() / 60_000 - 9) * 60_000;
    ArtefactRef stable = pkg("a", 48_200_000);
    ArtefactRef canary = pkg("b", 13_100_000);
    try (var producer =
        new KafkaProducer<>(
            Cluster.kafka().producer("it-runs-page"),
            new StringSerializer(),
            new ByteArraySerializer())) {
      send(
          producer,
          Topics.DEPLOYMENTS,
          deployment,
          event(
              deployment,
              start + 1_000,
              DeploymentRequested.newBuilder()
                  .setArtefact(stable)
                  .setTarget("local")
                  .setCanaryPercent(100)
                  .setLabels(Map.of())
                  .build()));
      send(
          producer,
          Topics.DEPLOYMENTS,
          deployment,
          event(
              deployment,
              start + 3_000,
              DeploymentActive.newBuilder()
                  .setNode("node-1")
                  .setUrl("http://127.0.0.1:1")
                  .setArtefactSha256(stable.getSha256())
                  .setCanaryPercent(100)
                  .build()));
      send(
          producer,
          Topics.DEPLOYMENTS,
          deployment,
          event(
              deployment,
              start + 4 * 60_000,
              DeploymentRequested.newBuilder()
                  .setArtefact(canary)
                  .setTarget("local")
                  .setCanaryPercent(20)
                  .setPrevious(stable)
                  .setLabels(Map.of())
                  .build()));
      send(
          producer,
          Topics.DEPLOYMENTS,
          deployment,
          event(
              deployment,
              start + 4 * 60_000 + 2_000,
              DeploymentActive.newBuilder()
                  .setNode("node-1")
                  .setUrl("http://127.0.0.1:1")
                  .setArtefactSha256(canary.getSha256())
                  .setCanaryPercent(20)
                  .build()));
      send(
          producer,
          Topics.DEPLOYMENTS,
          deployment,
          event(
              deployment,
              start + 7 * 60_000,
              RolledBack.newBuilder()
                  .setReason("canary misfire rate 1.8% vs stable 0.5% over 400 requests")
                  .setRestored(stable)
                  .build()));
      int[] misfiresPerMinute = {1, 0, 1, 1, 3, 4, 4, 1, 0};
      for (int minute = 0; minute < misfiresPerMinute.length; minute++) {
        long t = start + minute * 60_000L;
        send(
            producer,
            Topics.SERVING_TRAFFIC,
            deployment,
            ServingTraffic.newBuilder()
                .setDeploymentId(deployment)
                .setNode("node-1")
                .setArtefactSha256(stable.getSha256())
                .setRequests(200)
                .setIntervalStart(Instant.ofEpochMilli(t))
                .setTs(Instant.ofEpochMilli(t + 59_000))
                .build());
        for (int i = 0; i < misfiresPerMinute[minute]; i++) {
          send(
              producer,
              Topics.MISFIRES,
              deployment,
              Misfire.newBuilder()
                  .setDeploymentId(deployment)
                  .setNode("node-1")
                  .setArtefactSha256(stable.getSha256())
                  .setRequestId(deployment + "-" + minute + "-" + i)
                  .setPrompt("c:" + (char) ('a' + i) + "=")
                  .setOutput("?")
                  .setExpected(String.valueOf((char) ('a' + i)))
                  .setReason(MisfireReason.WRONG_ANSWER)
                  .setTs(Instant.ofEpochMilli(t + 10_000 + i * 5_000L))
                  .build());
        }
      }
    }
  }

  static ArtefactRef pkg(String c, long bytes) {
    return ArtefactRef.newBuilder()
        .setUri("file:///nonexistent/browser-it/" + c)
        .setSha256(c.repeat(64))
        .setBytes(bytes)
        .setFormat("djl-package")
        .build();
  }

  static DeploymentEvent event(String deployment, long ts, Object payload) {
    return DeploymentEvent.newBuilder()
        .setDeploymentId(deployment)
        .setRunId("browser-it")
        .setTs(Instant.ofEpochMilli(ts))
        .setPayload(payload)
        .build();
  }

  static <T extends SpecificRecord> void send(
      KafkaProducer<String, byte[]> p, String topic, String key, T value) throws Exception {
    @SuppressWarnings("unchecked")
    AvroSerde<T> serde = (AvroSerde<T>) Cluster.kafka().serde(value.getClass());
    p.send(new ProducerRecord<>(topic, key, serde.serialize(topic, value))).get();
  }
}
