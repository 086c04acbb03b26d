package io.distillery.deployer.rollout;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.distillery.schemas.common.ArtefactRef;
import io.distillery.schemas.deployment.DeploymentEvent;
import io.distillery.schemas.deployment.DeploymentRequested;
import io.distillery.schemas.deployment.RolledBack;
import io.distillery.stage.StageException;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

class RolloutTest {

  final FakeChannel channel = new FakeChannel();
  final List<Double> percents = new ArrayList<>();
  final Rollout rollout = new Rollout(channel, channel.clock, (p, m, x) -> percents.add(p));
  final ArtefactRef stable = DeploymentHistoryTest.ref("a");
  final ArtefactRef candidate = DeploymentHistoryTest.ref("b");

  Rollout.Plan plan(int canaryPercent) {
    return new Rollout.Plan(
        "d",
        "r",
        candidate,
        "local",
        canaryPercent,
        null,
        Map.of("runId", "r"),
        Duration.ofSeconds(10),
        Duration.ofSeconds(30),
        40,
        0.1);
  }

  static DeploymentRequested request(DeploymentEvent e) {
    return (DeploymentRequested) e.getPayload();
  }

  @Test
  void shouldRequestAtFullShareAndCompleteWhenANodeAnswers() throws Exception {
    channel.history.add(DeploymentHistoryTest.requested(stable, 100));
    channel.onPublish = (c, e) -> c.answer("n1", request(e));
    Rollout.Outcome out = rollout.run(plan(100));
    assertThat(channel.published)
        .singleElement()
        .satisfies(
            e -> {
              assertThat(request(e).getCanaryPercent()).isEqualTo(100);
              assertThat(request(e).getArtefact()).isEqualTo(candidate);
              assertThat(request(e).getPrevious()).isEqualTo(stable);
              assertThat(request(e).getLabels()).containsEntry("runId", "r");
            });
    assertThat(out.canaried()).isFalse();
    assertThat(out.nodes()).containsExactly("n1");
    assertThat(out.previous()).isEqualTo(stable);
  }

  @Test
  void shouldRollBackACanaryThatMisfiresMoreThanTheStablePackage() throws Exception {
    channel.history.add(DeploymentHistoryTest.requested(stable, 100));
    channel.onPublish =
        (c, e) -> {
          if (e.getPayload() instanceof DeploymentRequested r) {
            c.answer("n1", r);
            c.traffic(stable, 160, 8); // 0.05
            c.traffic(candidate, 40, 20); // 0.50
          }
        };
    assertThatThrownBy(() -> rollout.run(plan(20)))
        .isInstanceOf(StageException.Rejected.class)
        .hasMessageContaining("deployment d")
        .hasMessageContaining("0.5000 (20/40)");
    assertThat(channel.published).hasSize(2);
    assertThat(request(channel.published.get(0)).getCanaryPercent()).isEqualTo(20);
    assertThat(channel.published.get(1).getPayload())
        .isInstanceOfSatisfying(
            RolledBack.class, rb -> assertThat(rb.getRestored()).isEqualTo(stable));
  }

  @Test
  void shouldPromoteAGoodCanaryAfterTheWindow() throws Exception {
    channel.history.add(DeploymentHistoryTest.requested(stable, 100));
    channel.onPublish =
        (c, e) -> {
          DeploymentRequested r = request(e);
          c.answer("n1", r);
          if (r.getCanaryPercent() < 100) {
            c.traffic(stable, 100, 5);
            c.traffic(
                candidate, 10,
                1); // 0.1 <= 0.05 + 0.1, but only 10 of 40 requests: waits for the 30 s window
          }
        };
    Rollout.Outcome out = rollout.run(plan(20));
    assertThat(channel.published)
        .extracting(e -> request(e).getCanaryPercent())
        .containsExactly(20, 100);
    assertThat(out.canaried()).isTrue();
    assertThat(out.canary().requests()).isEqualTo(10);
    assertThat(out.metrics())
        .containsEntry("canaryMisfireRate", 0.1)
        .containsEntry("stableMisfireRate", 0.05)
        .containsEntry("nodes", 1.0);
    assertThat(percents).anySatisfy(p -> assertThat(p).isBetween(25.0, 85.0)).isSorted();
  }

  @Test
  void shouldSkipTheCanaryWithoutAStablePackage() throws Exception {
    channel.onPublish = (c, e) -> c.answer("n1", request(e));
    Rollout.Outcome out = rollout.run(plan(20));
    assertThat(channel.published)
        .extracting(e -> request(e).getCanaryPercent())
        .containsExactly(100);
    assertThat(request(channel.published.getFirst()).getPrevious()).isNull();
    assertThat(out.canaried()).isFalse();
  }

  @Test
  void shouldKeepTheRealPreviousPackageWhenARetriedRolloutFindsItsOwnEarlierRequest()
      throws Exception {
    channel.history.add(DeploymentHistoryTest.requested(stable, 100));
    channel.history.add(
        DeploymentHistoryTest.requested(candidate, 100)); // attempt 1: no node answered
    channel.onPublish = (c, e) -> c.answer("n1", request(e));
    Rollout.Outcome out = rollout.run(plan(100));
    assertThat(out.previous()).isEqualTo(stable);
    assertThat(request(channel.published.getFirst()).getPrevious()).isEqualTo(stable);
  }

  @Test
  void shouldFailRetryablyNamingTheDeploymentWhenNoNodeAnswers() {
    channel.onPublish =
        (c, e) ->
            c.answer(
                "n1",
                DeploymentRequested.newBuilder(request(e))
                    .setArtefact(stable)
                    .build()); // a node answering for another artefact does not count
    assertThatThrownBy(() -> rollout.run(plan(100)))
        .isInstanceOf(StageException.Retryable.class)
        .hasMessageContaining("no serving node answered for deployment d")
        .hasMessageContaining("10s");
  }
}
