package io.distillery.it;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.distillery.model.llama.LlamaModel;
import io.distillery.model.safetensors.DType;
import io.distillery.model.tasks.TaskExample;
import io.distillery.model.tasks.TaskJsonl;
import io.distillery.model.tokenizer.ByteTokenizer;
import io.distillery.schemas.common.ArtefactRef;
import io.distillery.schemas.deployment.DeploymentActive;
import io.distillery.schemas.deployment.DeploymentEvent;
import io.distillery.schemas.deployment.DeploymentRequested;
import io.distillery.schemas.deployment.RolledBack;
import io.distillery.schemas.run.RunState;
import io.distillery.schemas.run.RunStatus;
import io.distillery.schemas.run.StageState;
import io.distillery.schemas.run.StageStatus;
import io.distillery.serving.ServingConfig;
import io.distillery.serving.ServingMain;
import io.vertx.core.json.JsonArray;
import io.vertx.core.json.JsonObject;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.UUID;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.MethodOrderer;
import org.junit.jupiter.api.Order;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestMethodOrder;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Issue 6 end to end on the real broker and registry, with the real planner, quantizer, pruner,
 * evaluator and deployer workers and a real serving node: the test only registers runs and talks
 * HTTP to the node.
 *
 * <ol>
 *   <li>two candidates fan into the evaluator (w8-rtn: harmless; 90% magnitude sparsity: destroys
 *       the tiny model), the gate passes only the quantized one, the deployer rolls it out and the
 *       node answers with it;
 *   <li>the destroyed model, let through by permissive gates, goes out as a 50% canary under
 *       verifiable traffic and is rolled back automatically; the node answers from the stable
 *       package again;
 *   <li>a new candidate rolled out at 100% while client threads hammer the node: no request fails,
 *       and the answers come from the new package once it is active.
 * </ol>
 *
 * The teacher is a one-layer byte-level Llama that has memorised "copy one letter" ({@code c:q=}
 * answers {@code q}); its {@code test.jsonl} is the evaluator's eval split, and the prompts sent
 * over HTTP are drawn from it.
 */
@TestMethodOrder(MethodOrderer.OrderAnnotation.class)
class DeliveryIT {

  static final Logger LOG = LoggerFactory.getLogger(DeliveryIT.class);
  static final ObjectMapper JSON = new ObjectMapper();
  static final HttpClient HTTP =
      HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(10)).build();
  static final String DEPLOYMENT = "it-delivery-" + UUID.randomUUID().toString().substring(0, 8);

  static Cluster.Services services;
  static ServingMain serving;
  static String url;
  static Path model;
  static List<TaskExample> examples;

  /** The package the first test deployed (the good, quantized model), once it has run. */
  static ArtefactRef goodPackage;

  static final String TWO_CANDIDATES =
      """
      name: delivery-two-candidates
      timeout: 5m
      stages:
        w8:     { stage: quantizer, params: { scheme: w8-rtn } }
        sparse: { stage: pruner, params: { method: magnitude, sparsity: 0.9 } }
        eval:   { stage: evaluator, after: [w8, sparse],
                  params: { gates: { retention: 0.9, agreement: 0.8 }, latencyRuns: 1, decodeTokens: 2 } }
        deploy: { stage: deployer, after: [eval], retries: 1,
                  params: { deployment: %s, canaryPercent: 100, activeTimeoutSeconds: 60 } }
      """;

  static final String BAD_CANARY =
      """
      name: delivery-bad-canary
      timeout: 5m
      stages:
        sparse: { stage: pruner, params: { method: magnitude, sparsity: 0.9 } }
        eval:   { stage: evaluator, after: [sparse],
                  params: { gates: { retention: 0.0 }, latencyRuns: 1, decodeTokens: 2 } }
        deploy: { stage: deployer, after: [eval],
                  params: { deployment: %s, canaryPercent: 50, canaryWindowSeconds: 30, canaryMinRequests: 20,
                            rollbackMargin: 0.2, activeTimeoutSeconds: 60 } }
      """;

  static final String NEW_MODEL =
      """
      name: delivery-hot-swap
      timeout: 5m
      stages:
        light:  { stage: pruner, params: { method: magnitude, sparsity: 0.2 } }
        deploy: { stage: deployer, after: [light],
                  params: { deployment: %s, canaryPercent: 100, activeTimeoutSeconds: 60 } }
      """;

  @BeforeAll
  static void start() throws Exception {
    services = Cluster.services(true, "delivery", "quantizer", "pruner", "evaluator", "deployer");
    model = Cluster.newDir("copy-teacher");
    examples = new ArrayList<>();
    for (char c = 'a'; c <= 'z'; c++) {
      examples.add(new TaskExample("copy", "c:" + c + "=", String.valueOf(c)));
    }
    try (LlamaModel teacher = TinyCopyTeacher.memorise(examples)) {
      teacher.save(model, DType.F32);
    }
    ByteTokenizer.instance().save(model);
    TaskJsonl.write(model.resolve("test.jsonl"), examples); // the evaluator's eval split

    // escalation off: every answer is the deployed artefact's own, so verify mismatches are the
    // canary's
    ServingConfig config =
        ServingConfig.of(Cluster.bootstrap(), Cluster.registry(), Cluster.store())
            .withNodeId("it-delivery-node")
            .withDeployments(List.of(DEPLOYMENT))
            .withConfidenceThreshold(Double.NEGATIVE_INFINITY)
            .withTiming(Duration.ofSeconds(30), 200);
    serving = ServingMain.start(config, null);
    url = serving.node().url();
    await(
        "the serving node replays distillery.deployments",
        serving::restored,
        Duration.ofSeconds(60));
  }

  @AfterAll
  static void stop() {
    if (serving != null) {
      serving.close();
    }
    if (services != null) {
      services.close();
    }
  }

  @Test
  @Order(1)
  void shouldDeployThePassingCandidateAndAnswerOverHttpWhenTheOtherFailsItsGate() throws Exception {
    String runId = register(TWO_CANDIDATES.formatted(DEPLOYMENT));
    RunState done =
        Cluster.awaitRun(runId, r -> r.getStatus() != RunStatus.RUNNING, Duration.ofSeconds(90));
    assertThat(done.getStatus())
        .as(String.valueOf(done.getReason()))
        .isEqualTo(RunStatus.SUCCEEDED);

    // the evaluator chose the quantized candidate; the deployer packaged exactly that one
    ArtefactRef w8 = stage(done, "w8").getOutputs().getFirst();
    StageState eval = stage(done, "eval");
    assertThat(eval.getOutputs().getFirst().getSha256()).isEqualTo(w8.getSha256());
    assertThat(eval.getMetrics()).containsEntry("candidates", 2.0).containsEntry("passing", 1.0);
    ArtefactRef pkg = stage(done, "deploy").getOutputs().getFirst();
    assertThat(pkg.getFormat()).isEqualTo("djl-serving");
    Path pkgDir = Path.of(URI.create(pkg.getUri()));
    JsonNode manifest = JSON.readTree(pkgDir.resolve("manifest.json").toFile());
    assertThat(manifest.toString()).contains(w8.getSha256());

    // the node serves that package: /health and the completion both name its sha, and the answer is
    // right
    JsonObject health = health();
    assertThat(health.getString("status")).isEqualTo("UP");
    assertThat(deploymentHealth(health).getJsonObject("stable").getString("sha256"))
        .isEqualTo(pkg.getSha256());
    TaskExample heldOut = examples.get(16); // c:q= -> q
    JsonObject reply = complete(heldOut.prompt(), heldOut.answer());
    assertThat(text(reply)).isEqualTo(heldOut.answer());
    assertThat(sha(reply)).isEqualTo(pkg.getSha256());

    // the report in the package lists both candidates, the pruned one with the gate it failed
    JsonNode report = JSON.readTree(pkgDir.resolve("report.json").toFile());
    assertThat(report.path("chosen").asText()).isEqualTo("w8");
    assertThat(report.path("runId").asText()).isEqualTo(runId);
    List<String> names = new ArrayList<>();
    List<String> sparseFailed = new ArrayList<>();
    for (JsonNode c : report.path("candidates")) {
      names.add(c.path("name").asText());
      assertThat(c.path("passed").asBoolean())
          .as(c.toString())
          .isEqualTo(c.path("name").asText().equals("w8"));
      if (c.path("name").asText().equals("sparse")) {
        c.path("gates")
            .forEach(
                g -> {
                  if (!g.path("passed").asBoolean()) {
                    sparseFailed.add(g.path("gate").asText());
                  }
                });
      }
    }
    assertThat(names).containsExactlyInAnyOrder("w8", "sparse");
    assertThat(sparseFailed).isNotEmpty();
    goodPackage = pkg;
  }

  @Test
  @Order(2)
  void shouldRollBackABadCanaryAutomatically() throws Exception {
    String stableSha = ensureGoodStable();
    try (DeployerIT.DeploymentLog log = new DeployerIT.DeploymentLog()) {
      String runId = register(BAD_CANARY.formatted(DEPLOYMENT));
      AtomicBoolean stopTraffic = new AtomicBoolean();
      Set<String> answeredBy = ConcurrentHashMap.newKeySet();
      ConcurrentLinkedQueue<String> failures = new ConcurrentLinkedQueue<>();
      ExecutorService clients = Executors.newFixedThreadPool(2);
      try {
        for (int t = 0; t < 2; t++) {
          int offset = t;
          clients.submit(() -> drive(offset, stopTraffic, answeredBy, failures, null, null));
        }
        DeploymentEvent requested =
            log.await(
                DEPLOYMENT,
                e -> e.getRunId().equals(runId) && e.getPayload() instanceof DeploymentRequested,
                Duration.ofSeconds(90));
        DeploymentRequested canary = (DeploymentRequested) requested.getPayload();
        assertThat(canary.getCanaryPercent()).isEqualTo(50);
        assertThat(canary.getPrevious().getSha256()).isEqualTo(stableSha);
        log.await(
            DEPLOYMENT,
            e ->
                e.getRunId().equals(runId)
                    && e.getPayload() instanceof DeploymentActive a
                    && a.getCanaryPercent() == 50,
            Duration.ofSeconds(60));

        DeploymentEvent rolledBack =
            log.await(
                DEPLOYMENT,
                e -> e.getRunId().equals(runId) && e.getPayload() instanceof RolledBack,
                Duration.ofSeconds(60));
        RolledBack rb = (RolledBack) rolledBack.getPayload();
        assertThat(rb.getRestored().getSha256()).isEqualTo(stableSha);
        assertThat(rb.getReason()).contains(DEPLOYMENT).contains("exceeds stable");
        stopTraffic.set(true);
        assertThat(answeredBy)
            .as("the canary answered some of the verified traffic")
            .contains(canary.getArtefact().getSha256(), stableSha);
        assertThat(failures).as("HTTP failures").isEmpty();

        RunState done =
            Cluster.awaitRun(
                runId, s -> s.getStatus() != RunStatus.RUNNING, Duration.ofSeconds(60));
        assertThat(done.getStatus()).isEqualTo(RunStatus.REJECTED);
        assertThat(stage(done, "eval").getStatus()).isEqualTo(StageStatus.COMPLETED);
        assertThat(stage(done, "deploy").getStatus()).isEqualTo(StageStatus.REJECTED);
        assertThat(done.getVerdict()).startsWith("REJECTED").contains("rolled back");
        assertThat(log.seen(DEPLOYMENT))
            .as("the canary was never promoted")
            .noneMatch(
                e ->
                    e.getRunId().equals(runId)
                        && e.getPayload() instanceof DeploymentRequested r
                        && r.getCanaryPercent() == 100);
      } finally {
        stopTraffic.set(true);
        clients.shutdown();
      }
    }

    // the node dropped the canary: everything comes from the stable package again, and answers
    // right
    await(
        "the node drops the canary",
        () -> deploymentHealth(health()).getValue("canary") == null,
        Duration.ofSeconds(30));
    assertThat(deploymentHealth(health()).getJsonObject("stable").getString("sha256"))
        .isEqualTo(stableSha);
    for (TaskExample e : examples.subList(0, 10)) {
      JsonObject reply = complete(e.prompt(), e.answer());
      assertThat(sha(reply)).isEqualTo(stableSha);
      assertThat(text(reply)).isEqualTo(e.answer());
    }
  }

  @Test
  @Order(3)
  void shouldKeepServingWithoutFailuresWhileANewModelIsRolledOut() throws Exception {
    String oldSha = ensureGoodStable();
    int threads = 6;
    AtomicBoolean stop = new AtomicBoolean();
    Set<String> answeredBy = ConcurrentHashMap.newKeySet();
    ConcurrentLinkedQueue<String> failures = new ConcurrentLinkedQueue<>();
    AtomicInteger sent = new AtomicInteger();
    ConcurrentLinkedQueue<Answered> answers = new ConcurrentLinkedQueue<>();
    ExecutorService clients = Executors.newFixedThreadPool(threads);
    List<Future<?>> running = new ArrayList<>();
    try (DeployerIT.DeploymentLog log = new DeployerIT.DeploymentLog()) {
      for (int t = 0; t < threads; t++) {
        int offset = t;
        running.add(clients.submit(() -> drive(offset, stop, answeredBy, failures, sent, answers)));
      }
      await("clients are sending", () -> sent.get() >= 2 * threads, Duration.ofSeconds(30));

      String runId = register(NEW_MODEL.formatted(DEPLOYMENT));
      DeploymentEvent active =
          log.await(
              DEPLOYMENT,
              e ->
                  e.getRunId().equals(runId)
                      && e.getPayload() instanceof DeploymentActive a
                      && a.getCanaryPercent() == 100,
              Duration.ofSeconds(90));
      // the node swaps before it announces DeploymentActive: a request sent after the test saw it
      // gets the new model
      long activeSeen = System.nanoTime();
      String newSha = ((DeploymentActive) active.getPayload()).getArtefactSha256();
      assertThat(newSha).isNotEqualTo(oldSha);
      int atSwap = sent.get();
      // keep the load on until a few rounds of requests have been answered by the new package
      await(
          "the new package answers under load",
          () -> answeredBy.contains(newSha) && sent.get() >= atSwap + 4 * threads,
          Duration.ofSeconds(30));
      stop.set(true);
      for (Future<?> f : running) {
        f.get();
      }
      LOG.info(
          "hot swap under load threads={} requests={} failed={} afterActive={} old={} new={}",
          threads,
          sent.get(),
          failures.size(),
          answers.stream().filter(a -> a.sentNanos() > activeSeen).count(),
          oldSha.substring(0, 12),
          newSha.substring(0, 12));
      assertThat(failures).as("failed requests during the swap (of " + sent.get() + ")").isEmpty();
      assertThat(answeredBy)
          .as("answered by the old package before, the new one after")
          .contains(oldSha, newSha);
      assertThat(answers)
          .filteredOn(a -> a.sentNanos() > activeSeen)
          .as("requests sent after DeploymentActive")
          .isNotEmpty()
          .allSatisfy(a -> assertThat(a.sha()).isEqualTo(newSha));

      RunState done =
          Cluster.awaitRun(runId, s -> s.getStatus() != RunStatus.RUNNING, Duration.ofSeconds(60));
      assertThat(done.getStatus())
          .as(String.valueOf(done.getReason()))
          .isEqualTo(RunStatus.SUCCEEDED);
      assertThat(stage(done, "deploy").getOutputs().getFirst().getSha256()).isEqualTo(newSha);
    } finally {
      stop.set(true);
      clients.shutdown();
    }
    // after DeploymentActive every answer comes from the new package
    String newSha = deploymentHealth(health()).getJsonObject("stable").getString("sha256");
    assertThat(newSha).isNotEqualTo(oldSha);
    for (TaskExample e : examples.subList(0, 6)) {
      assertThat(sha(complete(e.prompt(), null))).isEqualTo(newSha);
    }
  }

  // ------------------------------------------------------------------------------------------------ helpers

  /**
   * The sha of the stable package, after making sure it is the good (quantized) model: the first
   * test's package, or a fresh rollout of the two-candidate recipe when this test runs alone or
   * after another swapped it out.
   */
  static String ensureGoodStable() throws Exception {
    String current =
        deploymentHealth(health()) == null
            ? null
            : deploymentHealth(health()).getJsonObject("stable").getString("sha256");
    if (goodPackage != null && goodPackage.getSha256().equals(current)) {
      return current;
    }
    String runId = register(TWO_CANDIDATES.formatted(DEPLOYMENT));
    RunState done =
        Cluster.awaitRun(runId, r -> r.getStatus() != RunStatus.RUNNING, Duration.ofSeconds(90));
    assertThat(done.getStatus())
        .as(String.valueOf(done.getReason()))
        .isEqualTo(RunStatus.SUCCEEDED);
    goodPackage = stage(done, "deploy").getOutputs().getFirst();
    await(
        "the node serves the good package",
        () ->
            goodPackage
                .getSha256()
                .equals(deploymentHealth(health()).getJsonObject("stable").getString("sha256")),
        Duration.ofSeconds(30));
    return goodPackage.getSha256();
  }

  /**
   * One client: completions over the eval prompts, {@code verify} set to the expected answer, until
   * {@code stop}; records which artefact answered and every request that did not get a 200 with a
   * completion.
   */
  static void drive(
      int offset,
      AtomicBoolean stop,
      Set<String> answeredBy,
      ConcurrentLinkedQueue<String> failures,
      AtomicInteger sent,
      ConcurrentLinkedQueue<Answered> answers) {
    for (int i = offset; !stop.get(); i++) {
      TaskExample e = examples.get(Math.floorMod(i * 7, examples.size()));
      try {
        long started = System.nanoTime();
        HttpResponse<String> r = post(e.prompt(), e.answer());
        if (r.statusCode() != 200) {
          failures.add(r.statusCode() + " " + r.body());
        } else {
          JsonObject body = new JsonObject(r.body());
          answeredBy.add(sha(body));
          if (answers != null) {
            answers.add(new Answered(started, sha(body)));
          }
          if (text(body) == null) {
            failures.add("no completion text: " + r.body());
          }
        }
      } catch (Exception ex) {
        failures.add(ex.toString());
      }
      if (sent != null) {
        sent.incrementAndGet();
      }
    }
  }

  /**
   * A completion that got a 200: when its request was sent ({@link System#nanoTime}) and which
   * artefact answered.
   */
  record Answered(long sentNanos, String sha) {}

  static String register(String recipe) throws Exception {
    var reg =
        Cluster.cli(
            "register", "--model", model.toString(), "--recipe", Cluster.recipe(recipe).toString());
    assertThat(reg.code()).as(reg.err()).isZero();
    return reg.out().trim();
  }

  static StageState stage(RunState r, String node) {
    return r.getStages().stream().filter(s -> s.getNode().equals(node)).findFirst().orElseThrow();
  }

  static HttpResponse<String> post(String prompt, String verify) throws Exception {
    JsonObject body =
        new JsonObject()
            .put("model", DEPLOYMENT)
            .put("prompt", prompt)
            .put("max_tokens", 4)
            .put("temperature", 0.0);
    if (verify != null) {
      body.put("verify", verify);
    }
    return HTTP.send(
        HttpRequest.newBuilder(URI.create(url + "/v1/completions"))
            .timeout(Duration.ofSeconds(30))
            .header("content-type", "application/json")
            .POST(HttpRequest.BodyPublishers.ofString(body.encode()))
            .build(),
        HttpResponse.BodyHandlers.ofString());
  }

  static JsonObject complete(String prompt, String verify) throws Exception {
    HttpResponse<String> r = post(prompt, verify);
    assertThat(r.statusCode()).as(r.body()).isEqualTo(200);
    return new JsonObject(r.body());
  }

  static String text(JsonObject reply) {
    return reply.getJsonArray("choices").getJsonObject(0).getString("text");
  }

  static String sha(JsonObject reply) {
    return reply.getJsonObject("distillery").getString("artefactSha256");
  }

  static JsonObject health() throws Exception {
    HttpResponse<String> r =
        HTTP.send(
            HttpRequest.newBuilder(URI.create(url + "/health"))
                .timeout(Duration.ofSeconds(10))
                .build(),
            HttpResponse.BodyHandlers.ofString());
    return new JsonObject(r.body());
  }

  /** This test's deployment in a /health answer, or null when the node has not loaded it. */
  static JsonObject deploymentHealth(JsonObject health) {
    JsonArray list = health.getJsonArray("deployments");
    for (int i = 0; i < list.size(); i++) {
      if (DEPLOYMENT.equals(list.getJsonObject(i).getString("id"))) {
        return list.getJsonObject(i);
      }
    }
    return null;
  }

  /**
   * Polls {@code condition} (cheap, local) until it holds, or fails naming {@code what} at the
   * deadline.
   */
  static void await(String what, Checked condition, Duration timeout) throws Exception {
    long deadline = System.nanoTime() + timeout.toNanos();
    while (!condition.holds()) {
      if (System.nanoTime() > deadline) {
        throw new AssertionError(what + ": not within " + timeout);
      }
      Thread.sleep(50);
    }
  }

  @FunctionalInterface
  interface Checked {
    boolean holds() throws Exception;
  }
}
