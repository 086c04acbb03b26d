package io.distillery.deployer.rollout;

import static org.assertj.core.api.Assertions.assertThat;

import io.distillery.schemas.common.ArtefactRef;
import io.distillery.schemas.deployment.DeploymentActive;
import io.distillery.schemas.deployment.DeploymentEvent;
import io.distillery.schemas.deployment.DeploymentRequested;
import io.distillery.schemas.deployment.RolledBack;
import java.time.Instant;
import java.util.List;
import org.junit.jupiter.api.Test;

class DeploymentHistoryTest {

  static ArtefactRef ref(String c) {
    return ArtefactRef.newBuilder()
        .setUri("file:///s/" + c)
        .setSha256(c.repeat(64))
        .setBytes(1)
        .setFormat("djl-serving")
        .build();
  }

  static DeploymentEvent ev(Object payload) {
    return DeploymentEvent.newBuilder()
        .setDeploymentId("d")
        .setRunId("r")
        .setTs(Instant.EPOCH)
        .setPayload(payload)
        .build();
  }

  static DeploymentEvent requested(ArtefactRef a, int percent) {
    return ev(
        DeploymentRequested.newBuilder()
            .setArtefact(a)
            .setTarget("local")
            .setCanaryPercent(percent)
            .build());
  }

  static DeploymentEvent active(ArtefactRef a, int percent) {
    return ev(
        DeploymentActive.newBuilder()
            .setNode("n")
            .setUrl("http://n")
            .setArtefactSha256(a.getSha256())
            .setCanaryPercent(percent)
            .build());
  }

  static DeploymentEvent rolledBack(ArtefactRef restored) {
    return ev(RolledBack.newBuilder().setReason("bad").setRestored(restored).build());
  }

  @Test
  void shouldHaveNoStablePackageBeforeAFullRequest() {
    assertThat(DeploymentHistory.stable(List.of())).isNull();
    assertThat(DeploymentHistory.stable(List.of(requested(ref("a"), 20)))).isNull();
  }

  @Test
  void shouldTakeTheLastFullRequest() {
    ArtefactRef a = ref("a");
    ArtefactRef b = ref("b");
    assertThat(
            DeploymentHistory.stable(List.of(requested(a, 100), active(a, 100), requested(b, 100))))
        .isEqualTo(b);
  }

  @Test
  void shouldKeepTheStablePackageWhenACanaryIsRolledBack() {
    ArtefactRef a = ref("a");
    ArtefactRef b = ref("b");
    assertThat(
            DeploymentHistory.stable(
                List.of(requested(a, 100), requested(b, 20), active(b, 20), rolledBack(a))))
        .isEqualTo(a);
    assertThat(
            DeploymentHistory.stable(
                List.of(requested(a, 100), requested(b, 20), rolledBack(null))))
        .isEqualTo(a);
  }

  @Test
  void shouldNotCountAnEarlierAttemptOfTheSameRolloutAsThePreviousPackage() {
    ArtefactRef a = ref("a");
    ArtefactRef b = ref("b");
    List<DeploymentEvent> history = List.of(requested(a, 100), active(a, 100), requested(b, 100));
    assertThat(DeploymentHistory.stable(history)).isEqualTo(b);
    assertThat(DeploymentHistory.stable(history, b.getSha256())).isEqualTo(a);
  }

  @Test
  void shouldRestoreThePreviousPackageWhenAFullRequestIsRolledBack() {
    ArtefactRef a = ref("a");
    ArtefactRef b = ref("b");
    assertThat(
            DeploymentHistory.stable(
                List.of(requested(a, 100), requested(b, 100), rolledBack(null))))
        .isEqualTo(a);
  }
}
