package io.distillery.it;

import static org.assertj.core.api.Assertions.assertThat;

import io.distillery.platform.worker.WorkerHost;
import io.distillery.platform.worker.WorkerMain;
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
 * A worker process is killed with SIGKILL in the middle of a long stage: its uncommitted job is retried by another
 * worker and the run completes with exactly one accepted Completed per stage.
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
    throw new AssertionError("the child worker did not log '" + line + "' within " + timeout + "; see " + log);
  }

  static StageState stage(RunState r, String node) {
    return r.getStages().stream().filter(s -> s.getNode().equals(node)).findFirst().orElseThrow();
  }

  @Test
  void shouldRetryAndCompleteWhenAWorkerIsKilledMidStage() throws Exception {
    Path log = Cluster.newDir("child").resolve("worker.log");
    ProcessBuilder pb = new ProcessBuilder(ProcessHandle.current().info().command().orElseThrow(),
        "-cp", System.getProperty("java.class.path"), WorkerMain.class.getName(), "slow-hash")
        .redirectErrorStream(true).redirectOutput(log.toFile());
    pb.environment().putAll(Cluster.workerEnv("child-worker"));
    Process child = pb.start();
    try {
      awaitLog(log, "stage=slow-hash worker=child-worker started", Duration.ofSeconds(60));
      String runId = Cluster.cli("register", "--model", Cluster.model("kill me").toString(), "--recipe",
          Cluster.recipe("""
              name: long
              timeout: 60s
              stages:
                a: { stage: hash }
                slow: { stage: slow-hash, after: [a], params: { steps: 40, pauseMs: 150 } }
                c: { stage: transform, after: [slow], params: { mode: upper } }
              """).toString()).out().trim();

      RunState mid = Cluster.awaitRun(runId, r -> r.getStatus() != RunStatus.RUNNING
          || stage(r, "slow").getPercent() >= 20, Duration.ofSeconds(90));
      assertThat(mid.getStatus()).as(String.valueOf(mid.getReason())).isEqualTo(RunStatus.RUNNING);
      assertThat(stage(mid, "slow").getWorker()).isEqualTo("child-worker");
      child.destroyForcibly().waitFor(); // SIGKILL: no shutdown hook, no commit
      assertThat(child.exitValue()).as("killed, see " + log).isNotZero();

      try (WorkerHost rescuer = Cluster.worker("slow-hash", "rescuer")) {
        RunState done = Cluster.awaitRun(runId, r -> r.getStatus() != RunStatus.RUNNING, Duration.ofSeconds(120));
        assertThat(done.getStatus()).as(String.valueOf(done.getReason())).isEqualTo(RunStatus.SUCCEEDED);
        assertThat(stage(done, "slow").getWorker()).isEqualTo("rescuer");
        assertThat(done.getStages()).allSatisfy(s -> {
          assertThat(s.getStatus()).isEqualTo(StageStatus.COMPLETED);
          assertThat(s.getCompletions()).as(s.getNode()).isEqualTo(1);
        });
        assertThat(stage(done, "slow").getMetrics()).containsEntry("steps", 40.0);
      }
    } finally {
      child.destroyForcibly();
    }
  }

}
