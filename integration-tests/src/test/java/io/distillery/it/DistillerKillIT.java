package io.distillery.it;

import static org.assertj.core.api.Assertions.assertThat;

import io.distillery.model.config.LlamaConfig;
import io.distillery.model.llama.LlamaModel;
import io.distillery.model.safetensors.DType;
import io.distillery.model.tokenizer.ByteTokenizer;
import io.distillery.runtime.kafka.Topics;
import io.distillery.runtime.serde.AvroSerde;
import io.distillery.runtime.worker.WorkerConfig;
import io.distillery.runtime.worker.WorkerHost;
import io.distillery.runtime.worker.WorkerMain;
import io.distillery.schemas.job.JobEvent;
import io.distillery.schemas.job.Progress;
import io.distillery.schemas.run.RunState;
import io.distillery.schemas.run.RunStatus;
import io.distillery.schemas.run.StageState;
import io.distillery.stage.StageRegistry;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.atomic.AtomicBoolean;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.TopicPartition;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * The distiller worker process is killed with SIGKILL in the middle of training; the job is picked
 * up by another distiller worker, which resumes from the checkpoint the first one left in the job's
 * work directory: its first progress event reports a checkpoint step (not step 1), its steps
 * continue from there, and the run completes.
 */
class DistillerKillIT {

  static final int STEPS = 400;
  static final int CHECKPOINT_EVERY = 20;
  static final int KILL_AFTER_STEP = 25;

  static Cluster.Services services;

  @BeforeAll
  static void start() throws Exception {
    services = Cluster.services(true, "distill-kill-it");
  }

  @AfterAll
  static void stop() {
    services.close();
  }

  static final String RECIPE =
      """
      name: distill-kill
      timeout: 300s
      stages:
        distill:
          stage: distiller
          params:
            source: tasks
            samples: 64
            evalSamples: 4
            student: { layers: 1, hidden: 16, heads: 2, kvHeads: 1, intermediate: 24 }
            steps: %d
            batch: 2
            seqLen: 32
            lr: 0.01
            checkpointEvery: %d
            progressEvery: 1
            evalEvery: 1000
      """
          .formatted(STEPS, CHECKPOINT_EVERY);

  /** A tiny random teacher with the byte tokenizer: the test is about resumption, not quality. */
  static Path teacher() throws Exception {
    Path dir = Cluster.newDir("teacher");
    LlamaConfig c =
        LlamaConfig.builder()
            .vocabSize(ByteTokenizer.VOCAB_SIZE)
            .hiddenSize(32)
            .intermediateSize(48)
            .numHiddenLayers(2)
            .numAttentionHeads(4)
            .numKeyValueHeads(2)
            .headDim(8)
            .maxPositionEmbeddings(128)
            .bosTokenId(ByteTokenizer.BOS_ID)
            .eosTokenIds(List.of(ByteTokenizer.EOS_ID))
            .padTokenId(ByteTokenizer.PAD_ID)
            .build();
    try (LlamaModel m = LlamaModel.random(c, 11)) {
      m.save(dir, DType.F32);
    }
    ByteTokenizer.instance().save(dir);
    return dir;
  }

  /** A distiller worker JVM that sends every progress event (no throttling). */
  static Process childWorker(String id, Path log) throws Exception {
    ProcessBuilder pb =
        new ProcessBuilder(
                ProcessHandle.current().info().command().orElseThrow(),
                "-Dai.djl.offline=true",
                "-DOPT_OUT_TRACKING=true",
                "-cp",
                System.getProperty("java.class.path"),
                WorkerMain.class.getName(),
                "distiller")
            .redirectErrorStream(true)
            .redirectOutput(log.toFile());
    pb.environment().putAll(Cluster.workerEnv(id));
    pb.environment().put("DISTILLERY_WORKER_PROGRESS_INTERVAL", "0ms");
    Process child = pb.start();
    WorkerKillIT.awaitLog(log, "stage=distiller worker=" + id + " started", Duration.ofSeconds(90));
    return child;
  }

  /**
   * Collects the run's progress events with a step metric, in topic order. The job the rescuer gets
   * is the same record the killed worker never acknowledged (same attempt number), so the two
   * executions are told apart by worker id.
   */
  record StepEvent(
      String worker, int attempt, double step, Map<String, Double> metrics, String message) {}

  static final class EventTail implements AutoCloseable {
    final List<StepEvent> events = new CopyOnWriteArrayList<>();
    private final AtomicBoolean running = new AtomicBoolean(true);
    private final Thread thread;

    EventTail(String runId) {
      AvroSerde<JobEvent> serde = Cluster.kafka().serde(JobEvent.class);
      thread =
          Thread.ofPlatform()
              .daemon()
              .start(
                  () -> {
                    try (KafkaConsumer<String, byte[]> c =
                        new KafkaConsumer<>(Cluster.kafka().consumer(null, "it-distill-tail"))) {
                      List<TopicPartition> parts =
                          c.partitionsFor(Topics.JOB_EVENTS).stream()
                              .map(p -> new TopicPartition(p.topic(), p.partition()))
                              .toList();
                      c.assign(parts);
                      c.seekToBeginning(parts);
                      while (running.get()) {
                        for (ConsumerRecord<String, byte[]> r : c.poll(Duration.ofMillis(50))) {
                          if (!runId.equals(r.key())) {
                            continue;
                          }
                          JobEvent e = serde.deserialize(r.topic(), r.value());
                          if (e.getPayload() instanceof Progress p
                              && p.getMetrics().containsKey("step")) {
                            events.add(
                                new StepEvent(
                                    e.getWorker(),
                                    e.getAttempt(),
                                    p.getMetrics().get("step"),
                                    Map.copyOf(p.getMetrics()),
                                    p.getMessage()));
                          }
                        }
                      }
                    }
                  });
    }

    List<StepEvent> of(String worker) {
      return events.stream().filter(e -> e.worker().equals(worker)).toList();
    }

    double maxStep(String worker) {
      return of(worker).stream().mapToDouble(StepEvent::step).max().orElse(0);
    }

    @Override
    public void close() throws InterruptedException {
      running.set(false);
      thread.join(5_000);
    }
  }

  static WorkerHost rescuer(String id) throws Exception {
    WorkerConfig c = Cluster.workerConfig(id);
    WorkerConfig unthrottled =
        new WorkerConfig(
            c.bootstrap(),
            c.registryUrl(),
            c.storeRoot(),
            c.readRoots(),
            c.workerId(),
            c.httpHost(),
            c.httpPort(),
            c.heartbeat(),
            Duration.ZERO,
            c.shutdownGrace());
    return WorkerHost.start(StageRegistry.discover().get("distiller"), unthrottled);
  }

  static void await(java.util.function.BooleanSupplier condition, Duration timeout, String what) {
    long deadline = System.nanoTime() + timeout.toNanos();
    while (!condition.getAsBoolean()) {
      if (System.nanoTime() > deadline) {
        throw new AssertionError("timed out after " + timeout + " waiting for " + what);
      }
      java.util.concurrent.locks.LockSupport.parkNanos(20_000_000L);
    }
  }

  @Test
  void shouldResumeFromTheLastCheckpointWhenTheDistillerWorkerIsKilled() throws Exception {
    Path log = Cluster.newDir("distiller-child").resolve("worker.log");
    Process child = childWorker("distiller-child", log);
    try {
      String runId =
          Cluster.cli(
                  "register",
                  "--model",
                  teacher().toString(),
                  "--recipe",
                  Cluster.recipe(RECIPE).toString())
              .out()
              .trim();
      try (EventTail tail = new EventTail(runId)) {
        await(
            () -> tail.maxStep("distiller-child") >= KILL_AFTER_STEP || !child.isAlive(),
            Duration.ofSeconds(120),
            "the child distiller to pass step " + KILL_AFTER_STEP + "; see " + log);
        child.destroyForcibly().waitFor(); // SIGKILL: no shutdown hook, no commit, no result event
        double killedAt = tail.maxStep("distiller-child");
        assertThat(killedAt)
            .as("killed mid-training, see " + log)
            .isBetween((double) KILL_AFTER_STEP, STEPS - 1.0);

        try (WorkerHost rescuer = rescuer("distiller-rescuer")) {
          RunState done =
              Cluster.awaitRun(
                  runId, r -> r.getStatus() != RunStatus.RUNNING, Duration.ofSeconds(180));
          assertThat(done.getStatus())
              .as(String.valueOf(done.getReason()))
              .isEqualTo(RunStatus.SUCCEEDED);
          StageState stage = WorkerKillIT.stage(done, "distill");
          assertThat(stage.getWorker()).isEqualTo("distiller-rescuer");

          await(
              () -> tail.maxStep("distiller-rescuer") >= STEPS,
              Duration.ofSeconds(30),
              "the last step event");
          List<StepEvent> resumed = tail.of("distiller-rescuer");
          StepEvent first = resumed.getFirst();
          System.out.printf(
              "distiller killed after step %.0f (attempt %d); retry attempt %d first reported step %.0f"
                  + " (%s)%n",
              killedAt,
              tail.of("distiller-child").getLast().attempt(),
              first.attempt(),
              first.step(),
              first.message());
          // the step counter continues from the saved checkpoint instead of restarting at 1
          assertThat(first.step()).isGreaterThan(1.0);
          assertThat(first.step() % CHECKPOINT_EVERY).as("a checkpoint step").isZero();
          assertThat(first.step())
              .isGreaterThanOrEqualTo(KILL_AFTER_STEP - KILL_AFTER_STEP % CHECKPOINT_EVERY)
              .isLessThanOrEqualTo(killedAt);
          assertThat(first.metrics()).containsEntry("resumedFrom", first.step());
          // (the host's heartbeat may repeat an event; the distinct steps must go on one by one
          // from the checkpoint)
          List<Double> steps = resumed.stream().map(StepEvent::step).distinct().toList();
          assertThat(steps.get(1)).isEqualTo(first.step() + 1);
          assertThat(steps).hasSize(STEPS - (int) first.step() + 1);
          assertThat(resumed).extracting(StepEvent::step).isSorted();
          assertThat(stage.getMetrics())
              .containsEntry("resumedFrom", first.step())
              .containsEntry("steps", (double) STEPS)
              .containsKeys("studentParams", "teacherParams", "trainLoss", "studentExactMatch");
          assertThat(Files.readString(log))
              .doesNotContain("stage=distiller worker=distiller-child stopped");
        }
      }
    } finally {
      child.destroyForcibly();
    }
  }
}
