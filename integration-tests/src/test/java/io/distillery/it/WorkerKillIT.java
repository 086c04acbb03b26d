package io.distillery.it;

import static org.assertj.core.api.Assertions.assertThat;

import io.distillery.runtime.worker.WorkerHost;
import io.distillery.runtime.worker.WorkerMain;
import io.distillery.schemas.run.RunState;
import io.distillery.schemas.run.RunStatus;
import io.distillery.schemas.run.StageState;
import io.distillery.schemas.run.StageStatus;
import java.nio.file.Path;
import java.time.Duration;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * A worker process is killed with SIGKILL in the middle of a long stage: its uncommitted job is
 * retried by another worker and the run completes with exactly one accepted Completed per stage.
 */
class WorkerKillIT {

  static Cluster.Services services;

  @BeforeAll
  static void start() throws Exception {
    services = Cluster.services(true, "kill-it", "hash", "transform");
  }

  @AfterAll
  static void stop() {
    services.close();
  }

  static void awaitLog(Path log, String line, Duration timeout) throws Exception {
    long deadline = System.nanoTime() + timeout.toNanos();
    while (System.nanoTime() < deadline) {
      if (java.nio.file.Files.exists(log) && java.nio.file.Files.readString(log).contains(line)) {
        return;
      }
      java.util.concurrent.locks.LockSupport.parkNanos(50_000_000L);
    }
    throw new AssertionError(
        "the child worker did not log '" + line + "' within " + timeout + "; see " + log);
  }

  static StageState stage(RunState r, String node) {
    return r.getStages().stream().filter(s -> s.getNode().equals(node)).findFirst().orElseThrow();
  }

  static final String LONG =
      """
      name: long
      timeout: 60s
      stages:
        a: { stage: hash }
        slow: { stage: slow-hash, after: [a], params: { steps: 40, pauseMs: 150 } }
        c: { stage: transform, after: [slow], params: { mode: upper } }
      """;

  /** Starts a worker JVM for slow-hash and waits until it serves its topic. */
  static Process childWorker(String id, Path log) throws Exception {
    ProcessBuilder pb =
        new ProcessBuilder(
                ProcessHandle.current().info().command().orElseThrow(),
                "-cp",
                System.getProperty("java.class.path"),
                WorkerMain.class.getName(),
                "slow-hash")
            .redirectErrorStream(true)
            .redirectOutput(log.toFile());
    pb.environment().putAll(Cluster.workerEnv(id));
    Process child = pb.start();
    awaitLog(log, "stage=slow-hash worker=" + id + " started", Duration.ofSeconds(60));
    return child;
  }

  /** Registers the long recipe and waits until the child worker is 20% into the slow stage. */
  static String registerAndAwaitMidStage(String text, String workerId) throws Exception {
    String runId =
        Cluster.cli(
                "register",
                "--model",
                Cluster.model(text).toString(),
                "--recipe",
                Cluster.recipe(LONG).toString())
            .out()
            .trim();
    RunState mid =
        Cluster.awaitRun(
            runId,
            r -> r.getStatus() != RunStatus.RUNNING || stage(r, "slow").getPercent() >= 20,
            Duration.ofSeconds(90));
    assertThat(mid.getStatus()).as(String.valueOf(mid.getReason())).isEqualTo(RunStatus.RUNNING);
    assertThat(stage(mid, "slow").getWorker()).isEqualTo(workerId);
    return runId;
  }

  @Test
  void shouldRetryAndCompleteWhenAWorkerIsKilledMidStage() throws Exception {
    Path log = Cluster.newDir("child").resolve("worker.log");
    Process child = childWorker("child-worker", log);
    try {
      String runId = registerAndAwaitMidStage("kill me", "child-worker");
      child.destroyForcibly().waitFor(); // SIGKILL: no shutdown hook, no commit
      assertThat(child.exitValue()).as("killed, see " + log).isNotZero();

      try (WorkerHost rescuer = Cluster.worker("slow-hash", "rescuer")) {
        RunState done =
            Cluster.awaitRun(
                runId, r -> r.getStatus() != RunStatus.RUNNING, Duration.ofSeconds(120));
        assertThat(done.getStatus())
            .as(String.valueOf(done.getReason()))
            .isEqualTo(RunStatus.SUCCEEDED);
        assertThat(stage(done, "slow").getWorker()).isEqualTo("rescuer");
        assertThat(done.getStages())
            .allSatisfy(
                s -> {
                  assertThat(s.getStatus()).isEqualTo(StageStatus.COMPLETED);
                  assertThat(s.getCompletions()).as(s.getNode()).isEqualTo(1);
                });
        assertThat(stage(done, "slow").getMetrics()).containsEntry("steps", 40.0);
      }
    } finally {
      child.destroyForcibly();
    }
  }

  @Test
  void shouldFinishTheRunningJobWhenTheWorkerIsToldToStop() throws Exception {
    Path log = Cluster.newDir("child").resolve("worker.log");
    Process child = childWorker("polite-worker", log);
    try {
      String runId = registerAndAwaitMidStage("stop me", "polite-worker");
      child.destroy(); // SIGTERM: the shutdown hook gives the running job its grace period
      assertThat(child.waitFor(60, java.util.concurrent.TimeUnit.SECONDS))
          .as("worker exited, see " + log)
          .isTrue();
      RunState done =
          Cluster.awaitRun(
              runId,
              r ->
                  stage(r, "slow").getStatus() == StageStatus.COMPLETED
                      || r.getStatus() != RunStatus.RUNNING,
              Duration.ofSeconds(60));
      assertThat(stage(done, "slow").getStatus()).isEqualTo(StageStatus.COMPLETED);
      assertThat(stage(done, "slow").getWorker())
          .as("finished by the stopping worker")
          .isEqualTo("polite-worker");
      assertThat(stage(done, "slow").getAttempt()).isEqualTo(1);
      assertThat(java.nio.file.Files.readString(log))
          .contains("stage=slow-hash worker=polite-worker stopped");
    } finally {
      child.destroyForcibly();
    }
  }
}
