package io.distillery.it;

import static org.assertj.core.api.Assertions.assertThat;

import io.distillery.bench.FeedbackLoop;
import io.distillery.schemas.run.RunStatus;
import java.time.Duration;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * Issue 7 end to end on the real broker and registry with the real planner, distiller, evaluator,
 * deployer, serving node and feedback service: a weak student misfires, the feedback loop
 * re-distils it on its misfires and redeploys, and the same prompts misfire measurably less. {@code
 * bench/feedback} runs the same {@link FeedbackLoop}.
 */
class FeedbackLoopIT {

  @BeforeAll
  static void cluster() {
    Cluster.ensureStarted();
  }

  @Test
  void shouldRedistillAndRedeployByItselfWhenTheDeployedStudentMisfires() throws Exception {
    FeedbackLoop loop =
        new FeedbackLoop(
            Cluster.bootstrap(),
            Cluster.registry(),
            Cluster.store(),
            Cluster.newDir("feedback-loop"),
            new FeedbackLoop.Options(40, 1200, 300, Duration.ofMinutes(6)),
            System.out);

    FeedbackLoop.Result result = loop.run();
    System.out.println(result.line());

    assertThat(result.teacherExactMatch())
        .as("the teacher answers the traffic's task")
        .isGreaterThanOrEqualTo(0.8);
    assertThat(result.misfireRateBefore())
        .as("the weak student misfires")
        .isGreaterThanOrEqualTo(0.5);
    assertThat(result.redistillRun().getStatus()).isEqualTo(RunStatus.SUCCEEDED);
    assertThat(result.shaAfter()).as("a new student is serving").isNotEqualTo(result.shaBefore());
    assertThat(result.misfireRateAfter())
        .as("the same prompts misfire measurably less")
        .isLessThanOrEqualTo(result.misfireRateBefore() - 0.25);
    assertThat(loop.redistillRegistrations()).as("one incident starts one run").isEqualTo(1);
  }
}
