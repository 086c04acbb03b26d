package io.distillery.cli;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import io.distillery.schemas.common.ArtefactRef;
import io.distillery.schemas.deployment.DeploymentActive;
import io.distillery.schemas.deployment.DeploymentEvent;
import io.distillery.schemas.deployment.DeploymentRequested;
import io.distillery.schemas.deployment.RolledBack;
import io.distillery.schemas.misfire.Misfire;
import io.distillery.schemas.misfire.MisfireReason;
import io.distillery.schemas.serving.ServingTraffic;
import java.time.Instant;
import java.util.Map;
import org.junit.jupiter.api.Test;

/**
 * The deployments panel's fold: stable package, canary state, rollbacks and the misfire rate per
 * minute.
 */
class DeploymentBoardTest {

  static final long T0 = 1_764_000_000_000L; // a whole minute
  static final ArtefactRef A = ref('a', 1_000);
  static final ArtefactRef B = ref('b', 250);

  final DeploymentBoard board = new DeploymentBoard();

  static ArtefactRef ref(char c, long bytes) {
    return ArtefactRef.newBuilder()
        .setUri("file:///store/" + c)
        .setSha256(String.valueOf(c).repeat(64))
        .setBytes(bytes)
        .setFormat("djl-package")
        .build();
  }

  void event(long ts, Object payload) {
    board.deployment(
        DeploymentEvent.newBuilder()
            .setDeploymentId("d1")
            .setRunId("r1")
            .setTs(Instant.ofEpochMilli(ts))
            .setPayload(payload)
            .build());
  }

  void request(long ts, ArtefactRef a, int percent) {
    event(
        ts,
        DeploymentRequested.newBuilder()
            .setArtefact(a)
            .setTarget("local")
            .setCanaryPercent(percent)
            .setLabels(Map.of())
            .build());
  }

  void active(long ts, String node, ArtefactRef a, int percent) {
    event(
        ts,
        DeploymentActive.newBuilder()
            .setNode(node)
            .setUrl("http://" + node)
            .setArtefactSha256(a.getSha256())
            .setCanaryPercent(percent)
            .build());
  }

  JsonNode d1() {
    return board.json("d1");
  }

  @Test
  void shouldKeepTheStablePackageActiveWhenTheCanaryIsRolledBack() {
    request(T0, A, 100);
    active(T0 + 1, "n1", A, 100);
    request(T0 + 2, B, 20);
    assertThat(d1().path("canary").path("state").asText()).isEqualTo("requested");
    active(T0 + 3, "n1", B, 20);
    assertThat(d1().path("canary").path("state").asText()).isEqualTo("serving");
    assertThat(d1().path("nodes")).hasSize(2);
    event(
        T0 + 4,
        RolledBack.newBuilder().setReason("canary misfires 9% vs 2%").setRestored(A).build());

    JsonNode d = d1();
    assertThat(d.path("active").path("sha256").asText()).isEqualTo(A.getSha256());
    assertThat(d.path("active").path("bytes").asLong()).isEqualTo(1_000);
    assertThat(d.path("active").path("nodes").asLong()).isEqualTo(1);
    assertThat(d.path("canary").path("state").asText()).isEqualTo("rolled back");
    assertThat(d.path("canary").path("percent").asInt()).isEqualTo(20);
    assertThat(d.path("rollbackCount").asInt()).isEqualTo(1);
    assertThat(d.path("rollbacks").path(0).path("reason").asText())
        .isEqualTo("canary misfires 9% vs 2%");
    assertThat(d.path("nodes")).as("the node no longer serves the canary").hasSize(1);
    assertThat(d.path("target").asText()).isEqualTo("local");
  }

  @Test
  void shouldMakeThePromotedCanaryTheActivePackage() {
    request(T0, A, 100);
    request(T0 + 1, B, 10);
    active(T0 + 2, "n1", B, 10);
    request(T0 + 3, B, 100);
    active(T0 + 4, "n1", B, 100);

    JsonNode d = d1();
    assertThat(d.path("active").path("sha256").asText()).isEqualTo(B.getSha256());
    assertThat(d.path("active").path("since").asLong()).isEqualTo(T0 + 3);
    assertThat(d.path("canary").path("state").asText()).isEqualTo("promoted");
    assertThat(d.path("rollbackCount").asInt()).isZero();
  }

  @Test
  void shouldRestoreThePreviousPackageWhenAFullRolloutIsRolledBackWithoutNamingOne() {
    request(T0, A, 100);
    request(T0 + 1, B, 100);
    event(T0 + 2, RolledBack.newBuilder().setReason("no node came up").build());

    assertThat(d1().path("active").path("sha256").asText()).isEqualTo(A.getSha256());
    assertThat(d1().path("canary").isNull()).isTrue();
  }

  static ServingTraffic traffic(long ts, long requests) {
    return ServingTraffic.newBuilder()
        .setDeploymentId("d1")
        .setNode("n1")
        .setArtefactSha256(A.getSha256())
        .setRequests(requests)
        .setIntervalStart(Instant.ofEpochMilli(ts - 5_000))
        .setTs(Instant.ofEpochMilli(ts))
        .build();
  }

  static Misfire misfire(long ts, String prompt) {
    return Misfire.newBuilder()
        .setDeploymentId("d1")
        .setRequestId("q-" + ts)
        .setPrompt(prompt)
        .setOutput("x")
        .setReason(MisfireReason.WRONG_ANSWER)
        .setTs(Instant.ofEpochMilli(ts))
        .build();
  }

  @Test
  void shouldCountDistinctMisfiresPerMinuteOverTheRequestsReported() {
    board.traffic(traffic(T0 + 10_000, 60));
    board.traffic(traffic(T0 + 50_000, 40));
    board.misfire(misfire(T0 + 1_000, "p1"));
    board.misfire(misfire(T0 + 2_000, "p2"));
    board.misfire(misfire(T0 + 3_000, "p1")); // a repeat: counted once
    board.misfire(misfire(T0 + 61_000, "p3")); // next minute, no traffic reported there

    JsonNode series = d1().path("misfires");
    assertThat(series).hasSize(2);
    assertThat(series.path(0).path("t").asLong()).isEqualTo(T0);
    assertThat(series.path(0).path("requests").asLong()).isEqualTo(100);
    assertThat(series.path(0).path("misfires").asLong()).isEqualTo(2);
    assertThat(series.path(0).path("duplicates").asLong()).isEqualTo(1);
    assertThat(series.path(0).path("rate").asDouble()).isEqualTo(0.02);
    assertThat(series.path(1).path("rate").isNull()).as("no rate without requests").isTrue();
    assertThat(d1().path("active").isNull()).as("traffic alone deploys nothing").isTrue();
  }

  @Test
  void shouldKeepOnlyTheLastFourHoursOfBuckets() {
    for (int i = 0; i < DeploymentBoard.MAX_BUCKETS + 10; i++) {
      board.traffic(traffic(T0 + i * DeploymentBoard.BUCKET_MS, 1));
    }
    JsonNode series = d1().path("misfires");
    assertThat(series).hasSize(DeploymentBoard.MAX_BUCKETS);
    assertThat(series.path(0).path("t").asLong()).isEqualTo(T0 + 10 * DeploymentBoard.BUCKET_MS);
  }
}
