package io.distillery.planner;

import static org.assertj.core.api.Assertions.assertThat;

import io.distillery.schemas.common.ArtefactRef;
import io.distillery.schemas.job.Completed;
import io.distillery.schemas.job.Failed;
import io.distillery.schemas.job.JobEvent;
import io.distillery.schemas.job.StageJob;
import io.distillery.schemas.job.Started;
import io.distillery.schemas.model.ModelRegistered;
import io.distillery.schemas.run.RunState;
import io.distillery.schemas.run.RunStatus;
import io.distillery.schemas.run.StageState;
import io.distillery.schemas.run.StageStatus;
import java.time.Duration;
import java.time.Instant;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

class RunPlannerTest {

  static final String DIAMOND =
      """
      name: diamond
      retries: 1
      timeout: 2s
      stages:
        a: { stage: hash }
        b: { stage: transform, after: [a], params: { mode: upper } }
        c: { stage: transform, after: [a], params: { mode: reverse } }
        d: { stage: merge, after: [b, c] }
      """;

  final RunPlanner planner = new RunPlanner(Duration.ofMillis(100), Duration.ofSeconds(1));

  static ModelRegistered reg(String recipe) {
    return ModelRegistered.newBuilder()
        .setRunId("r1")
        .setModelId("m")
        .setUri("file:///tmp/m")
        .setRecipe(recipe)
        .setRegisteredAt(Instant.EPOCH)
        .build();
  }

  static JobEvent event(StageJob job, Object payload) {
    return JobEvent.newBuilder()
        .setRunId(job.getRunId())
        .setJobId(job.getJobId())
        .setAttempt(job.getAttempt())
        .setStage(job.getStage())
        .setNode(job.getNode())
        .setWorker("w")
        .setTs(Instant.EPOCH)
        .setPayload(payload)
        .build();
  }

  static Completed done(String name) {
    return Completed.newBuilder()
        .setOutputs(
            List.of(
                ArtefactRef.newBuilder()
                    .setUri("file:///s/" + name)
                    .setSha256(name)
                    .setBytes(1)
                    .setFormat("dir")
                    .build()))
        .setMetrics(Map.of("x", 1.0))
        .build();
  }

  static StageState stage(RunState s, String node) {
    return s.getStages().stream().filter(x -> x.getNode().equals(node)).findFirst().orElseThrow();
  }

  @Test
  void shouldFanOutAndFanInWhenInputsComplete() {
    var step = planner.register(reg(DIAMOND), s -> true, 0);
    assertThat(step.dispatch()).extracting(StageJob::getNode).containsExactly("a");
    RunState s = step.state();
    StageJob a = step.dispatch().getFirst();

    step = planner.onEvent(s, event(a, done("a")), 10);
    assertThat(step.dispatch()).extracting(StageJob::getNode).containsExactly("b", "c");
    assertThat(
            step.dispatch().getFirst().getInputs().getFirst().getArtefacts().getFirst().getSha256())
        .isEqualTo("a");
    s = step.state();
    StageJob b = step.dispatch().get(0);
    StageJob c = step.dispatch().get(1);

    step = planner.onEvent(s, event(b, done("b")), 20);
    assertThat(step.dispatch()).isEmpty(); // d waits for c too
    s = step.state();
    step = planner.onEvent(s, event(c, done("c")), 30);
    assertThat(step.dispatch()).extracting(StageJob::getNode).containsExactly("d");
    StageJob d = step.dispatch().getFirst();
    assertThat(d.getInputs()).extracting(i -> i.getNode()).containsExactly("b", "c");
    s = step.state();
    step = planner.onEvent(s, event(d, done("d")), 40);
    assertThat(step.state().getStatus()).isEqualTo(RunStatus.SUCCEEDED);
    assertThat(step.state().getStages())
        .allSatisfy(x -> assertThat(x.getCompletions()).isEqualTo(1));
  }

  @Test
  void shouldIgnoreDuplicateCompletedWhenReplayed() {
    var step = planner.register(reg(DIAMOND), s -> true, 0);
    StageJob a = step.dispatch().getFirst();
    RunState s = planner.onEvent(step.state(), event(a, done("a")), 10).state();
    var again = planner.onEvent(s, event(a, done("a")), 11);
    assertThat(again.changed()).isFalse();
    assertThat(stage(s, "a").getCompletions()).isEqualTo(1);
  }

  @Test
  void shouldRetryWithBackoffWhenFailureIsRetryable() {
    var step = planner.register(reg(DIAMOND), s -> true, 0);
    StageJob a = step.dispatch().getFirst();
    RunState s =
        planner.onEvent(step.state(), event(a, new Failed("disk hiccup", true, false)), 10).state();
    assertThat(stage(s, "a").getStatus()).isEqualTo(StageStatus.RETRY_WAIT);
    assertThat(planner.tick(s, 50).changed()).isFalse(); // backoff 100 ms not over
    var retry = planner.tick(s, 111);
    assertThat(retry.dispatch())
        .singleElement()
        .satisfies(j -> assertThat(j.getAttempt()).isEqualTo(2));
    // a late event from attempt 1 is stale and ignored
    assertThat(planner.onEvent(retry.state(), event(a, done("a")), 120).changed()).isFalse();
    // attempt 2 fails again: retries (1) exhausted -> run fails, the rest is skipped
    StageJob a2 = retry.dispatch().getFirst();
    RunState failed =
        planner
            .onEvent(retry.state(), event(a2, new Failed("disk hiccup", true, false)), 130)
            .state();
    assertThat(failed.getStatus()).isEqualTo(RunStatus.FAILED);
    assertThat(failed.getReason()).contains("'a'").contains("disk hiccup");
    assertThat(stage(failed, "d").getStatus()).isEqualTo(StageStatus.SKIPPED);
  }

  @Test
  void shouldFailWithoutRetryWhenFailureIsFatal() {
    var step = planner.register(reg(DIAMOND), s -> true, 0);
    StageJob a = step.dispatch().getFirst();
    RunState s =
        planner
            .onEvent(
                step.state(), event(a, new Failed("invalid params: groupSize", false, false)), 10)
            .state();
    assertThat(s.getStatus()).isEqualTo(RunStatus.FAILED);
    assertThat(stage(s, "a").getAttempt()).isEqualTo(1);
  }

  @Test
  void shouldEndTheRunRejectedAndSkipTheRestWhenAStageRejectsTheCandidate() {
    var step = planner.register(reg(DIAMOND), s -> true, 0);
    StageJob a = step.dispatch().getFirst();
    var rejected =
        planner.onEvent(
            step.state(), event(a, new Failed("retention 0.91 < 0.97", false, true)), 10);
    RunState s = rejected.state();
    assertThat(s.getStatus()).isEqualTo(RunStatus.REJECTED);
    assertThat(s.getVerdict()).isEqualTo("REJECTED: retention 0.91 < 0.97");
    assertThat(stage(s, "a").getStatus()).isEqualTo(StageStatus.REJECTED);
    assertThat(stage(s, "a").getAttempt()).isEqualTo(1);
    assertThat(rejected.dispatch()).isEmpty();
    assertThat(s.getStages())
        .filteredOn(x -> !x.getNode().equals("a"))
        .allSatisfy(x -> assertThat(x.getStatus()).isEqualTo(StageStatus.SKIPPED));
    assertThat(planner.tick(s, 1_000_000).changed()).isFalse();
  }

  @Test
  void shouldRetryWhenAnAttemptSendsNoEventWithinItsTimeout() {
    var step = planner.register(reg(DIAMOND), s -> true, 0);
    StageJob a = step.dispatch().getFirst();
    RunState s = planner.onEvent(step.state(), event(a, new Started("")), 100).state();
    assertThat(planner.tick(s, 2000).changed()).isFalse();
    var timedOut = planner.tick(s, 2101);
    assertThat(stage(timedOut.state(), "a").getMessage()).contains("timed out");
    assertThat(stage(timedOut.state(), "a").getStatus()).isEqualTo(StageStatus.RETRY_WAIT);
    assertThat(planner.tick(timedOut.state(), 2202).dispatch())
        .singleElement()
        .satisfies(j -> assertThat(j.getAttempt()).isEqualTo(2));
  }

  @Test
  void shouldNameTheFirstInstantTheClockCanChangeARunAsItsNextDue() {
    var step = planner.register(reg(DIAMOND), s -> true, 0);
    StageJob a = step.dispatch().getFirst();
    RunState running = planner.onEvent(step.state(), event(a, new Started("")), 100).state();
    long timeout =
        planner.nextDue(running); // last event at 100, timeout 2 s: tick acts once now - 100 > 2000
    assertThat(timeout).isEqualTo(2101);
    assertThat(planner.tick(running, timeout - 1).changed()).isFalse();
    RunState waiting = planner.tick(running, timeout).state();
    assertThat(stage(waiting, "a").getStatus()).isEqualTo(StageStatus.RETRY_WAIT);
    long retry = planner.nextDue(waiting); // the retry's backoff
    assertThat(retry).isEqualTo(stage(waiting, "a").getRetryAt()).isGreaterThan(timeout);
    assertThat(planner.tick(waiting, retry - 1).changed()).isFalse();
    assertThat(planner.tick(waiting, retry).dispatch()).hasSize(1);

    RunState failed =
        planner.onEvent(step.state(), event(a, new Failed("bad params", false, false)), 10).state();
    assertThat(planner.nextDue(failed))
        .isEqualTo(Long.MAX_VALUE); // a finished run never needs the clock
  }

  @Test
  void shouldRejectRunWhenRecipeHasACycleOrUnknownStage() {
    String cyclic =
        """
        name: loop
        stages:
          a: { stage: hash, after: [c] }
          b: { stage: hash, after: [a] }
          c: { stage: hash, after: [b] }
        """;
    RunState r = planner.register(reg(cyclic), s -> true, 0).state();
    assertThat(r.getStatus()).isEqualTo(RunStatus.REJECTED);
    assertThat(r.getReason()).contains("cycle").contains("a -> b -> c -> a");

    RunState u = planner.register(reg(DIAMOND), s -> !s.equals("merge"), 0).state();
    assertThat(u.getStatus()).isEqualTo(RunStatus.REJECTED);
    assertThat(u.getReason())
        .contains("no worker serves stage 'merge'")
        .contains("distillery.jobs.merge");
  }
}
