package io.distillery.serving;

import io.distillery.runtime.artefact.FileArtefactStore;
import io.distillery.schemas.common.ArtefactRef;
import io.distillery.schemas.deployment.DeploymentEvent;
import io.distillery.schemas.deployment.DeploymentRequested;
import io.distillery.schemas.deployment.RolledBack;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Instant;
import java.util.Map;

/** Deployer packages in a test store and the rollout events that name them. */
final class Rollouts {

  private Rollouts() {}

  /**
   * A {@code djl-serving}-style package ({@code model/} holding a tiny checkpoint) put into the
   * store.
   */
  static ArtefactRef pack(FileArtefactStore store, Path scratch, int hidden, long seed)
      throws IOException {
    Path pkg = Files.createDirectories(scratch.resolve("pkg-" + hidden + "-" + seed));
    TinyCheckpoints.write(Files.createDirectories(pkg.resolve("model")), hidden, 2, seed);
    Files.writeString(pkg.resolve("serving.properties"), "engine=PyTorch\n");
    return store.put(pkg, "djl-serving", true);
  }

  static DeploymentEvent requested(
      String deployment, ArtefactRef artefact, int canaryPercent, ArtefactRef teacher) {
    return DeploymentEvent.newBuilder()
        .setDeploymentId(deployment)
        .setRunId("run-1")
        .setTs(Instant.now())
        .setPayload(
            DeploymentRequested.newBuilder()
                .setArtefact(artefact)
                .setTarget("local")
                .setCanaryPercent(canaryPercent)
                .setPrevious(null)
                .setTeacher(teacher)
                .setLabels(Map.of())
                .build())
        .build();
  }

  static DeploymentEvent rolledBack(String deployment, ArtefactRef restored) {
    return DeploymentEvent.newBuilder()
        .setDeploymentId(deployment)
        .setRunId("run-1")
        .setTs(Instant.now())
        .setPayload(
            RolledBack.newBuilder().setReason("canary misfires").setRestored(restored).build())
        .build();
  }
}
