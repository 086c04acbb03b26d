package io.distillery.serving.rollout;

import static org.assertj.core.api.Assertions.assertThat;

import io.distillery.schemas.common.ArtefactRef;
import io.distillery.schemas.deployment.DeploymentActive;
import io.distillery.schemas.deployment.DeploymentEvent;
import io.distillery.schemas.deployment.DeploymentRequested;
import io.distillery.schemas.deployment.RolledBack;
import java.time.Instant;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

/** The current stable artefact per deployment, as a restarted node replays it (protocol.md). */
class DeploymentReplayTest {

  static ArtefactRef ref(String sha) {
    return ArtefactRef.newBuilder()
        .setUri("file:///store/" + sha)
        .setSha256(sha)
        .setBytes(1)
        .setFormat("djl-serving")
        .build();
  }

  static DeploymentEvent event(String id, Object payload) {
    return DeploymentEvent.newBuilder()
        .setDeploymentId(id)
        .setRunId("r")
        .setTs(Instant.EPOCH)
        .setPayload(payload)
        .build();
  }

  static DeploymentEvent requested(String id, String sha, int percent, String teacher) {
    return event(
        id,
        DeploymentRequested.newBuilder()
            .setArtefact(ref(sha))
            .setTarget("local")
            .setCanaryPercent(percent)
            .setPrevious(null)
            .setTeacher(teacher == null ? null : ref(teacher))
            .setLabels(Map.of())
            .build());
  }

  static Map<String, String> stableShas(List<DeploymentEvent> events) {
    Map<String, DeploymentEvent> stable = new LinkedHashMap<>();
    events.forEach(e -> DeploymentFollower.replay(stable, e));
    Map<String, String> out = new LinkedHashMap<>();
    stable.forEach(
        (k, v) -> out.put(k, ((DeploymentRequested) v.getPayload()).getArtefact().getSha256()));
    return out;
  }

  @Test
  void shouldKeepFollowingWhenAModelDoesNotFitTheNodesDirectMemory() {
    List<String> applied = new ArrayList<>();
    DeploymentFollower.Target target =
        e -> {
          String sha = ((DeploymentRequested) e.getPayload()).getArtefact().getSha256();
          if (sha.equals("huge")) {
            // what DJL's PtNDManager raised loading a Llama-3.2-1B teacher on a 4 GB direct limit
            throw new OutOfMemoryError("Cannot reserve 67108864 bytes of direct buffer memory");
          }
          applied.add(sha);
        };

    assertThat(DeploymentFollower.applyLogged(target, requested("big", "huge", 100, null)))
        .isFalse();
    assertThat(DeploymentFollower.applyLogged(target, requested("small", "s", 100, null))).isTrue();
    assertThat(applied).containsExactly("s");
  }

  @Test
  void shouldRestoreTheLastPromotedArtefactIgnoringCanariesAndAnnouncements() {
    Map<String, String> shas =
        stableShas(
            List.of(
                requested("chat", "a", 100, "t"),
                event(
                    "chat",
                    DeploymentActive.newBuilder()
                        .setNode("n")
                        .setUrl("u")
                        .setArtefactSha256("a")
                        .build()),
                requested("chat", "b", 10, "t"),
                requested("chat", "b", 100, "t"),
                requested("search", "x", 100, null),
                requested("chat", "c", 10, "t")));

    assertThat(shas).containsExactly(Map.entry("chat", "b"), Map.entry("search", "x"));
  }

  @Test
  void shouldRestoreWhatARollbackRestoredKeepingTheTeacher() {
    Map<String, DeploymentEvent> stable = new LinkedHashMap<>();
    for (DeploymentEvent e :
        List.of(
            requested("chat", "a", 100, "t"),
            requested("chat", "b", 100, "t"),
            event(
                "chat",
                RolledBack.newBuilder().setReason("misfires").setRestored(ref("a")).build()))) {
      DeploymentFollower.replay(stable, e);
    }
    DeploymentRequested restored = (DeploymentRequested) stable.get("chat").getPayload();
    assertThat(restored.getArtefact().getSha256()).isEqualTo("a");
    assertThat(restored.getCanaryPercent()).isEqualTo(100);
    assertThat(restored.getTeacher().getSha256()).isEqualTo("t");
  }

  @Test
  void shouldRestoreNothingForADeploymentThatOnlyEverHadACanary() {
    assertThat(stableShas(List.of(requested("chat", "a", 20, null)))).isEmpty();
  }
}
