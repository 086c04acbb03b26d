package io.distillery.bench;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.distillery.feedback.FeedbackApp;
import io.distillery.feedback.FeedbackConfig;
import io.distillery.model.tasks.TaskExample;
import io.distillery.model.tasks.TaskJsonl;
import io.distillery.model.tasks.TaskKind;
import io.distillery.model.tasks.TaskSettings;
import io.distillery.model.train.TeacherConfig;
import io.distillery.model.train.TeacherReport;
import io.distillery.model.train.TeacherTrainer;
import io.distillery.planner.PlannerApp;
import io.distillery.planner.PlannerConfig;
import io.distillery.runtime.config.Settings;
import io.distillery.runtime.kafka.KafkaSettings;
import io.distillery.runtime.kafka.Topics;
import io.distillery.runtime.serde.AvroSerde;
import io.distillery.runtime.worker.WorkerConfig;
import io.distillery.runtime.worker.WorkerHost;
import io.distillery.schemas.deployment.DeploymentActive;
import io.distillery.schemas.deployment.DeploymentEvent;
import io.distillery.schemas.model.ModelRegistered;
import io.distillery.schemas.run.RunState;
import io.distillery.schemas.run.RunStatus;
import io.distillery.serving.ServingConfig;
import io.distillery.serving.ServingMain;
import io.distillery.stage.StageRegistry;
import io.vertx.core.Vertx;
import java.io.IOException;
import java.io.PrintStream;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Deque;
import java.util.HashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.UUID;
import java.util.function.Function;
import java.util.function.Predicate;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * The closed loop of issue 7, end to end on a real broker: a tiny teacher is trained on the copy
 * task; a deliberately weak student (a few distillation steps) is distilled, evaluated and deployed
 * to a serving node; verifiable traffic makes it misfire; the feedback service trips, registers a
 * re-distillation run on the misfires, which is distilled from the deployed student, evaluated
 * against its gates and deployed; the same prompts are sent again. Used by {@code bench/feedback}
 * (its own in-process stack) and by the integration test (the shared test cluster).
 */
public final class FeedbackLoop {

  /** What one loop measured. */
  public record Result(
      double misfireRateBefore,
      double misfireRateAfter,
      long secondsToRedeploy,
      String weakRunId,
      String redistillRunId,
      RunState redistillRun,
      String shaBefore,
      String shaAfter,
      int prompts,
      double teacherExactMatch) {

    public String line() {
      return String.format(
          Locale.ROOT,
          "feedback misfire_rate_before=%.3f misfire_rate_after=%.3f seconds_to_redeploy=%d",
          misfireRateBefore,
          misfireRateAfter,
          secondsToRedeploy);
    }
  }

  /**
   * Sizes of the loop.
   *
   * @param prompts distinct verifiable prompts sent before and after
   * @param teacherSteps steps of the tiny teacher's training
   * @param redistillSteps distillation steps of the re-distillation run
   * @param timeout deadline of each wait
   */
  public record Options(int prompts, int teacherSteps, int redistillSteps, Duration timeout) {
    public static Options defaults() {
      return new Options(60, 1200, 400, Duration.ofMinutes(5));
    }
  }

  private static final ObjectMapper JSON = new ObjectMapper();

  private final String bootstrap;
  private final String registry;
  private final Path store;
  private final Path work;
  private final Options options;
  private final PrintStream log;
  private final KafkaSettings kafka;
  private final String deployment = "loop-" + UUID.randomUUID().toString().substring(0, 8);

  public FeedbackLoop(
      String bootstrap, String registry, Path store, Path work, Options options, PrintStream log) {
    this.bootstrap = bootstrap;
    this.registry = registry;
    this.store = store;
    this.work = work;
    this.options = options;
    this.log = log;
    this.kafka = KafkaSettings.of(bootstrap, registry);
  }

  /** The deployment this loop created. */
  public String deployment() {
    return deployment;
  }

  /**
   * Re-distillation runs registered for this loop's deployment so far (read to the end of the
   * topic).
   */
  public long redistillRegistrations() {
    AvroSerde<ModelRegistered> serde = kafka.serde(ModelRegistered.class);
    try (KafkaConsumer<String, byte[]> c =
        new KafkaConsumer<>(kafka.consumer(null, "loop-count"))) {
      List<TopicPartition> parts = new ArrayList<>();
      c.partitionsFor(Topics.MODELS_REGISTERED)
          .forEach(p -> parts.add(new TopicPartition(p.topic(), p.partition())));
      c.assign(parts);
      c.seekToBeginning(parts);
      Map<TopicPartition, Long> end = c.endOffsets(parts);
      long count = 0;
      while (parts.stream().anyMatch(p -> c.position(p) < end.get(p))) {
        for (ConsumerRecord<String, byte[]> r : c.poll(Duration.ofMillis(200))) {
          ModelRegistered m = serde.deserialize(r.topic(), r.value());
          if (deployment.equals(m.getLabels().get("deployment"))
              && "misfires".equals(m.getLabels().get("trigger"))) {
            count++;
          }
        }
      }
      return count;
    }
  }

  public Result run() throws Exception {
    Files.createDirectories(work);
    Deque<AutoCloseable> running = new ArrayDeque<>();
    Vertx vertx = Vertx.vertx();
    try {
      running.push(vertx::close);
      Path teacher =
          store.resolve("models").resolve(deployment + "-teacher"); // inside the store's roots
      double teacherExactMatch = trainTeacher(teacher);
      List<TaskExample> prompts =
          TaskJsonl.read(teacher.resolve("test.jsonl")).stream().limit(options.prompts()).toList();

      running.push(
          PlannerApp.start(PlannerConfig.of(bootstrap, registry, work.resolve("planner")))
              .awaitRunning(options.timeout()));
      WorkerConfig workers = WorkerConfig.of(bootstrap, registry, store).withHttpPort(-1);
      for (String stage : List.of("distiller", "evaluator", "deployer")) {
        running.push(
            WorkerHost.start(
                StageRegistry.discover().get(stage), workers.withWorkerId("loop-" + stage), vertx));
      }
      ServingMain node =
          ServingMain.start(
              ServingConfig.of(bootstrap, registry, store)
                  .withDeployments(List.of(deployment))
                  .withTiming(Duration.ofSeconds(30), 300),
              vertx);
      running.push(node);
      String url = node.node().url();
      FeedbackApp feedback =
          FeedbackApp.start(feedbackConfig(), vertx).awaitRunning(options.timeout());
      running.push(feedback);

      Path redistill = writeRecipe("redistill.yaml", redistillRecipe());
      Path weak = writeRecipe("weak.yaml", weakRecipe(redistill));
      String weakRunId = register(teacher, weak, Map.of("deployment", deployment));
      log.println("loop: weak student run " + weakRunId + " (deployment " + deployment + ")");
      RunState weakRun = awaitRun(weakRunId, r -> r.getStatus() != RunStatus.RUNNING);
      if (weakRun.getStatus() != RunStatus.SUCCEEDED) {
        throw new IllegalStateException(
            "the weak student's run ended " + weakRun.getStatus() + ": " + weakRun.getReason());
      }
      String shaBefore = awaitActive(null);

      double before = misfireRate(url, prompts);
      log.printf(
          Locale.ROOT, "loop: misfire rate before %.3f over %d prompts%n", before, prompts.size());
      ModelRegistered trigger = awaitRedistillRegistration();
      log.println(
          "loop: feedback registered re-distillation run "
              + trigger.getRunId()
              + " labels "
              + trigger.getLabels());
      RunState redistilled = awaitRun(trigger.getRunId(), r -> r.getStatus() != RunStatus.RUNNING);
      if (redistilled.getStatus() != RunStatus.SUCCEEDED) {
        throw new IllegalStateException(
            "re-distillation run ended "
                + redistilled.getStatus()
                + ": "
                + redistilled.getReason());
      }
      String shaAfter = awaitActive(shaBefore);
      long seconds = Duration.between(trigger.getRegisteredAt(), Instant.now()).toSeconds();
      double after = misfireRate(url, prompts);
      log.printf(Locale.ROOT, "loop: misfire rate after %.3f%n", after);
      return new Result(
          before,
          after,
          seconds,
          weakRunId,
          trigger.getRunId(),
          redistilled,
          shaBefore,
          shaAfter,
          prompts.size(),
          teacherExactMatch);
    } finally {
      while (!running.isEmpty()) {
        try {
          running.pop().close();
        } catch (Exception e) {
          log.println("while stopping: " + e);
        }
      }
    }
  }

  /** A small Llama that copies 2-3 letter strings; its held-out split is the loop's traffic. */
  private double trainTeacher(Path dir) throws IOException {
    TeacherConfig config =
        TeacherConfig.teacher()
            .layers(2)
            .hidden(64)
            .heads(4)
            .kvHeads(2)
            .intermediate(128)
            .steps(options.teacherSteps())
            .batch(32)
            .learningRate(3e-3)
            .warmupSteps(30)
            .threads(1)
            .seed(7)
            .tasks(List.of(TaskKind.COPY))
            .taskSettings(TaskSettings.defaults().withAlphabet("abcdefgh").withTextLength(2, 3))
            .validationExamples(20)
            .testExamples(options.prompts())
            .evalEvery(0)
            .build();
    TeacherReport report = new TeacherTrainer(config, p -> {}).trainAndSave(dir);
    log.printf(
        Locale.ROOT,
        "loop: teacher params=%d exact_match=%.3f seconds=%.0f%n",
        report.parameters(),
        report.exactMatch(),
        report.totalSeconds());
    return report.exactMatch();
  }

  private FeedbackConfig feedbackConfig() {
    Map<String, String> env = new HashMap<>();
    env.put("DISTILLERY_FEEDBACK_BOOTSTRAP", bootstrap);
    env.put("DISTILLERY_FEEDBACK_REGISTRY", registry);
    env.put("DISTILLERY_FEEDBACK_APPLICATION_ID", "loop-feedback-" + deployment);
    env.put("DISTILLERY_FEEDBACK_STATE_DIR", work.resolve("feedback-state").toString());
    env.put("DISTILLERY_FEEDBACK_STORE", store.toString());
    env.put("DISTILLERY_FEEDBACK_WINDOW", "20s");
    env.put("DISTILLERY_FEEDBACK_ADVANCE", "5s");
    env.put("DISTILLERY_FEEDBACK_GRACE", "1s");
    env.put("DISTILLERY_FEEDBACK_MIN_RATE", "0.3");
    env.put("DISTILLERY_FEEDBACK_MIN_MISFIRES", String.valueOf(Math.max(5, options.prompts() / 4)));
    env.put("DISTILLERY_FEEDBACK_COOL_DOWN", "30m");
    env.put("DISTILLERY_FEEDBACK_MAX_RUNS_PER_DAY", "2");
    env.put("DISTILLERY_FEEDBACK_IDLE_CLOSE", "3s");
    env.put("DISTILLERY_FEEDBACK_HTTP_PORT", "0");
    return FeedbackConfig.from(new Settings("feedback", env));
  }

  /** The deliberately weak first student: three distillation steps of a one-layer model. */
  private String weakRecipe(Path redistill) {
    return """
        name: loop-weak
        timeout: 5m
        stages:
          distill: { stage: distiller, params: { student: { layers: 1, hidden: 32, heads: 2, kvHeads: 1, intermediate: 64 }, source: tasks, samples: 64, steps: 3, batch: 8, seqLen: 32, evalSamples: 16 } }
          eval:    { stage: evaluator, after: [distill], params: { samples: 20 } }
          deploy:  { stage: deployer, after: [eval], params: { canaryPercent: 100, activeTimeoutSeconds: 60, redistillRecipe: "%s" } }
        """
        .formatted(redistill);
  }

  /**
   * The deployment's re-distillation recipe: the deployed student and the misfire set come as run
   * inputs; the gates are retention on the held-out task split and improvement on the held-out
   * misfires.
   */
  private String redistillRecipe() {
    return """
        name: loop-redistill
        timeout: 10m
        stages:
          distill: { stage: distiller, params: { source: tasks, samples: 128, misfireWeight: 4, steps: %d, batch: 16, seqLen: 32, lr: 0.003, evalSamples: 16, patience: 100 } }
          eval:    { stage: evaluator, after: [distill], params: { samples: 40, gates: { retention: 0.0, misfireImprovement: 0.0 } } }
          deploy:  { stage: deployer, after: [eval], params: { canaryPercent: 100, activeTimeoutSeconds: 60 } }
        """
        .formatted(options.redistillSteps());
  }

  private Path writeRecipe(String name, String text) throws IOException {
    Path file = work.resolve(name).toAbsolutePath();
    Files.writeString(file, text);
    return file;
  }

  private String register(Path model, Path recipe, Map<String, String> labels) throws Exception {
    String runId = UUID.randomUUID().toString();
    try (var p =
        new KafkaProducer<>(
            kafka.producer("loop"), new StringSerializer(), kafka.serde(ModelRegistered.class))) {
      p.send(
              new ProducerRecord<>(
                  Topics.MODELS_REGISTERED,
                  "loop-teacher",
                  ModelRegistered.newBuilder()
                      .setRunId(runId)
                      .setModelId("loop-teacher")
                      .setUri(model.toAbsolutePath().toUri().toString())
                      .setRecipe(Files.readString(recipe))
                      .setRecipeRef(recipe.toString())
                      .setLabels(labels)
                      .setRegisteredAt(Instant.now())
                      .build()))
          .get();
    }
    return runId;
  }

  /**
   * Sends every prompt once with its exact answer as {@code verify}; the share answered wrongly.
   */
  private double misfireRate(String url, List<TaskExample> prompts) throws Exception {
    int wrong = 0;
    try (HttpClient http = HttpClient.newHttpClient()) {
      for (TaskExample e : prompts) {
        String body =
            JSON.createObjectNode()
                .put("model", deployment)
                .put("prompt", e.prompt())
                .put("max_tokens", 8)
                .put("verify", e.answer())
                .toString();
        HttpResponse<String> response =
            http.send(
                HttpRequest.newBuilder(URI.create(url + "/v1/completions"))
                    .timeout(Duration.ofSeconds(30))
                    .header("Content-Type", "application/json")
                    .POST(HttpRequest.BodyPublishers.ofString(body))
                    .build(),
                HttpResponse.BodyHandlers.ofString());
        if (response.statusCode() != 200) {
          throw new IllegalStateException(
              "completion failed: HTTP " + response.statusCode() + " " + response.body());
        }
        JsonNode answer = JSON.readTree(response.body());
        if (!answer.path("choices").path(0).path("text").asText().trim().equals(e.answer())) {
          wrong++;
        }
      }
    }
    return (double) wrong / prompts.size();
  }

  private RunState awaitRun(String runId, Predicate<RunState> until) {
    AvroSerde<RunState> serde = kafka.serde(RunState.class);
    return awaitRecord(
        Topics.RUNS,
        r -> runId.equals(r.key()) ? serde.deserialize(r.topic(), r.value()) : null,
        until,
        "run " + runId);
  }

  /**
   * The sha of the next DeploymentActive at 100% for the loop's deployment whose sha differs from
   * {@code not}.
   */
  private String awaitActive(String not) {
    AvroSerde<DeploymentEvent> serde = kafka.serde(DeploymentEvent.class);
    DeploymentEvent event =
        awaitRecord(
            Topics.DEPLOYMENTS,
            r -> {
              if (!deployment.equals(r.key())) {
                return null;
              }
              DeploymentEvent e = serde.deserialize(r.topic(), r.value());
              return e.getPayload() instanceof DeploymentActive ? e : null;
            },
            e -> {
              DeploymentActive a = (DeploymentActive) e.getPayload();
              return a.getCanaryPercent() == 100 && !a.getArtefactSha256().equals(not);
            },
            "deployment " + deployment + " active" + (not == null ? "" : " with a new artefact"));
    return ((DeploymentActive) event.getPayload()).getArtefactSha256();
  }

  private ModelRegistered awaitRedistillRegistration() {
    AvroSerde<ModelRegistered> serde = kafka.serde(ModelRegistered.class);
    return awaitRecord(
        Topics.MODELS_REGISTERED,
        r -> serde.deserialize(r.topic(), r.value()),
        m ->
            deployment.equals(m.getLabels().get("deployment"))
                && "misfires".equals(m.getLabels().get("trigger")),
        "a re-distillation run for " + deployment);
  }

  private <T> T awaitRecord(
      String topic,
      Function<ConsumerRecord<String, byte[]>, T> decode,
      Predicate<T> until,
      String what) {
    try (KafkaConsumer<String, byte[]> c =
        new KafkaConsumer<>(kafka.consumer(null, "loop-await"))) {
      List<TopicPartition> parts = new ArrayList<>();
      c.partitionsFor(topic).forEach(p -> parts.add(new TopicPartition(p.topic(), p.partition())));
      c.assign(parts);
      c.seekToBeginning(parts);
      long deadline = System.nanoTime() + options.timeout().toNanos();
      T last = null;
      while (System.nanoTime() < deadline) {
        for (ConsumerRecord<String, byte[]> r : c.poll(Duration.ofMillis(200))) {
          T value = decode.apply(r);
          if (value != null) {
            last = value;
            if (until.test(value)) {
              return value;
            }
          }
        }
      }
      throw new IllegalStateException(
          "timed out after " + options.timeout() + " waiting for " + what + "; last: " + last);
    }
  }
}
