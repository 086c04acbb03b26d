package io.distillery.it;

import static org.assertj.core.api.Assertions.assertThat;

import io.distillery.cli.Main;
import io.distillery.planner.PlannerApp;
import io.distillery.planner.PlannerConfig;
import io.distillery.runtime.kafka.KafkaSettings;
import io.distillery.runtime.kafka.TopicAdmin;
import io.distillery.runtime.kafka.Topics;
import io.distillery.runtime.serde.AvroSerde;
import io.distillery.runtime.worker.WorkerConfig;
import io.distillery.runtime.worker.WorkerHost;
import io.distillery.schemas.run.RunState;
import io.distillery.schemas.run.RunStatus;
import io.distillery.schemas.run.StageState;
import io.distillery.schemas.run.StageStatus;
import io.distillery.stack.LocalStack;
import io.distillery.stage.StageRegistry;
import java.io.IOException;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.UUID;
import java.util.function.Predicate;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.TopicPartition;

/**
 * The real in-process stack shared by all integration tests of one JVM: a KRaft broker and the
 * Apicurio registry (Confluent API), started once and stopped at JVM exit. Tests start their own
 * planner and workers on it.
 */
final class Cluster {

  private static LocalStack stack;
  private static String bootstrap;
  private static String registry;
  private static Path root;

  private Cluster() {}

  /**
   * Starts the in-process stack once, or uses an external one when {@code DISTILLERY_IT_BOOTSTRAP}
   * and {@code DISTILLERY_IT_REGISTRY} are set (e.g. {@code docker compose -f
   * infra/docker-compose.yml up} where Docker exists).
   */
  static synchronized void ensureStarted() {
    if (bootstrap != null) {
      return;
    }
    try {
      Path dir = root();
      String externalBootstrap = System.getenv("DISTILLERY_IT_BOOTSTRAP");
      String externalRegistry = System.getenv("DISTILLERY_IT_REGISTRY");
      if (externalBootstrap != null && externalRegistry != null) {
        bootstrap = externalBootstrap;
        registry = externalRegistry;
      } else {
        stack = LocalStack.start(dir.resolve("stack"));
        bootstrap = stack.bootstrapServers();
        registry = stack.registryUrl();
        Runtime.getRuntime()
            .addShutdownHook(
                new Thread(
                    () -> {
                      try {
                        stack.close();
                      } catch (Exception e) {
                        // the JVM is exiting; nothing left to report to
                      }
                    }));
      }
      try (TopicAdmin admin = new TopicAdmin(kafka())) {
        admin.ensurePlatformTopics();
      }
    } catch (Exception e) {
      throw new IllegalStateException("cannot start the local stack: " + e, e);
    }
  }

  /**
   * A fresh root per test JVM (the store and its output cache must not leak between builds); starts
   * nothing.
   */
  private static synchronized Path root() throws IOException {
    if (root == null) {
      root =
          Files.createDirectories(
              Path.of("target", "it-run", UUID.randomUUID().toString()).toAbsolutePath());
    }
    return root;
  }

  static String bootstrap() {
    ensureStarted();
    return bootstrap;
  }

  static String registry() {
    ensureStarted();
    return registry;
  }

  static KafkaSettings kafka() {
    return KafkaSettings.of(bootstrap(), registry());
  }

  /** The artefact store of all tests of this JVM (tests on their own broker use it too). */
  static Path store() {
    try {
      return root().resolve("store");
    } catch (IOException e) {
      throw new java.io.UncheckedIOException(e);
    }
  }

  static Path newDir(String prefix) throws IOException {
    return Files.createDirectories(root().resolve(prefix + "-" + UUID.randomUUID()));
  }

  static PlannerApp planner(Path stateDir) throws InterruptedException {
    PlannerConfig config =
        PlannerConfig.of(bootstrap(), registry(), stateDir)
            .withBackoff(Duration.ofMillis(200), Duration.ofSeconds(2));
    return PlannerApp.start(config).awaitRunning(Duration.ofSeconds(90));
  }

  static WorkerConfig workerConfig(String id) {
    return WorkerConfig.of(bootstrap(), registry(), store())
        .withWorkerId(id)
        .withTiming(Duration.ofMillis(500), Duration.ofSeconds(5))
        .withHttpPort(0);
  }

  static WorkerHost worker(String stage, String id) throws IOException {
    return WorkerHost.start(StageRegistry.discover().get(stage), workerConfig(id));
  }

  /**
   * A planner and one worker host per stage, started together for a test class and closed together.
   */
  record Services(PlannerApp planner, List<WorkerHost> workers) implements AutoCloseable {
    @Override
    public void close() {
      workers.forEach(WorkerHost::close);
      if (planner != null) {
        planner.close();
      }
    }
  }

  static Services services(boolean withPlanner, String workerId, String... stages)
      throws Exception {
    PlannerApp planner = withPlanner ? planner(newDir("planner")) : null;
    List<WorkerHost> workers = new java.util.ArrayList<>();
    for (String stage : stages) {
      workers.add(worker(stage, workerId));
    }
    return new Services(planner, workers);
  }

  /**
   * Registers {@code recipeYaml} on {@code model} and asserts the run fails on its first attempt
   * (fatal: not retried) with {@code problem} in the run's reason and in {@code watch}'s output.
   */
  static RunState awaitFatal(Path model, String recipeYaml, String problem) throws Exception {
    var reg =
        cli("register", "--model", model.toString(), "--recipe", recipe(recipeYaml).toString());
    assertThat(reg.code()).as(reg.err()).isZero();
    String runId = reg.out().trim();
    RunState r = awaitRun(runId, s -> s.getStatus() != RunStatus.RUNNING, Duration.ofMinutes(2));
    assertThat(r.getStatus()).as(String.valueOf(r.getReason())).isEqualTo(RunStatus.FAILED);
    StageState failed =
        r.getStages().stream()
            .filter(s -> s.getStatus() == StageStatus.FAILED)
            .findFirst()
            .orElseThrow();
    assertThat(failed.getAttempt()).as("fatal: not retried").isEqualTo(1);
    assertThat(r.getReason()).contains(problem);
    var watch = cli("watch", runId, "--plain", "--timeout", "30");
    // watch wraps long reasons at word boundaries to the terminal width: compare with the lines
    // joined
    assertThat(watch.out().replaceAll("\\s*\\n\\s*", " ")).contains("FAILED").contains(problem);
    return r;
  }

  /** Runs the CLI in-process; returns its exit code and output. */
  static Cli cli(String... args) {
    return cli(kafka(), args);
  }

  /**
   * Runs the CLI in-process against {@code target} (another cluster or registry than the shared
   * ones).
   */
  static Cli cli(KafkaSettings target, String... args) {
    StringWriter out = new StringWriter();
    StringWriter err = new StringWriter();
    List<String> all = new java.util.ArrayList<>(List.of(args));
    all.addAll(
        List.of(
            "--bootstrap",
            target.bootstrapServers(),
            "--registry",
            target.registryUrl(),
            "--store",
            store().toString()));
    int code =
        Main.execute(
            new PrintWriter(out, true), new PrintWriter(err, true), all.toArray(String[]::new));
    return new Cli(code, out.toString(), err.toString());
  }

  record Cli(int code, String out, String err) {}

  /** A tiny "model" directory with a text file, made by the test. */
  static Path model(String text) throws IOException {
    Path m = newDir("model");
    Files.writeString(m.resolve("config.json"), "{\"model_type\":\"llama\"}");
    Files.writeString(m.resolve("prompt.txt"), text);
    return m;
  }

  static Path recipe(String yaml) throws IOException {
    Path f = newDir("recipe").resolve("recipe.yaml");
    Files.writeString(f, yaml);
    return f;
  }

  /**
   * Reads the runs topic until {@code runId}'s state satisfies {@code until}, or fails at the
   * deadline.
   */
  static RunState awaitRun(String runId, Predicate<RunState> until, Duration timeout) {
    return awaitRun(kafka(), runId, until, timeout);
  }

  /** As {@link #awaitRun(String, Predicate, Duration)}, on {@code target}. */
  static RunState awaitRun(
      KafkaSettings target, String runId, Predicate<RunState> until, Duration timeout) {
    AvroSerde<RunState> serde = target.serde(RunState.class);
    Map<String, Object> props = target.consumer(null, "it-await");
    try (KafkaConsumer<String, byte[]> c = new KafkaConsumer<>(props)) {
      List<TopicPartition> parts =
          c.partitionsFor(Topics.RUNS).stream()
              .map(p -> new TopicPartition(p.topic(), p.partition()))
              .toList();
      c.assign(parts);
      c.seekToBeginning(parts);
      long deadline = System.nanoTime() + timeout.toNanos();
      RunState last = null;
      while (System.nanoTime() < deadline) {
        for (ConsumerRecord<String, byte[]> r : c.poll(Duration.ofMillis(100))) {
          if (runId.equals(r.key())) {
            last = serde.deserialize(r.topic(), r.value());
            if (until.test(last)) {
              return last;
            }
          }
        }
      }
      throw new AssertionError(
          "run " + runId + " did not reach the expected state in " + timeout + "; last: " + last);
    }
  }

  static Map<String, String> workerEnv(String id) {
    Map<String, String> env = new HashMap<>(System.getenv());
    env.put("DISTILLERY_WORKER_BOOTSTRAP", bootstrap());
    env.put("DISTILLERY_WORKER_REGISTRY", registry());
    env.put("DISTILLERY_WORKER_STORE", store().toString());
    env.put("DISTILLERY_WORKER_ID", id);
    env.put("DISTILLERY_WORKER_HTTP_PORT", "-1");
    env.put("DISTILLERY_WORKER_HEARTBEAT", "500ms");
    return env;
  }
}
