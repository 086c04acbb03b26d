package io.distillery.it;

import static org.assertj.core.api.Assertions.assertThat;

import io.distillery.planner.PlannerApp;
import io.distillery.schemas.run.RunState;
import io.distillery.schemas.run.RunStatus;
import io.distillery.schemas.run.StageStatus;
import java.time.Duration;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * The planner stops mid-run and a new instance starts on an empty state directory: it restores the
 * run from the changelog, takes the events it missed, and completes the run.
 */
class PlannerRestartIT {

  static Cluster.Services services;

  @BeforeAll
  static void start() throws Exception {
    services = Cluster.services(false, "restart-it", "hash", "slow-hash", "transform");
  }

  @AfterAll
  static void stop() {
    services.close();
  }

  @Test
  void shouldCompleteTheRunWhenThePlannerRestartsMidRun() throws Exception {
    PlannerApp first = Cluster.planner(Cluster.newDir("planner"));
    String runId;
    try {
      runId =
          Cluster.cli(
                  "register",
                  "--model",
                  Cluster.model("restart me").toString(),
                  "--recipe",
                  Cluster.recipe(
                          """
              name: restart
              stages:
                a: { stage: hash }
                slow: { stage: slow-hash, after: [a], params: { steps: 20, pauseMs: 150 } }
                c: { stage: transform, after: [slow], params: { mode: reverse } }
              """)
                      .toString())
              .out()
              .trim();
      Cluster.awaitRun(
          runId,
          r -> r.getStages().get(1).getStatus() == StageStatus.RUNNING,
          Duration.ofSeconds(60));
    } finally {
      first.close();
    }
    // the slow stage finishes while no planner runs; its events wait on the topic
    try (PlannerApp second = Cluster.planner(Cluster.newDir("planner-fresh"))) {
      RunState done =
          Cluster.awaitRun(runId, r -> r.getStatus() != RunStatus.RUNNING, Duration.ofSeconds(120));
      assertThat(done.getStatus())
          .as(String.valueOf(done.getReason()))
          .isEqualTo(RunStatus.SUCCEEDED);
      assertThat(done.getStages()).allSatisfy(s -> assertThat(s.getCompletions()).isEqualTo(1));
    }
  }
}
