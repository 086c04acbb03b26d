package io.distillery.deployer.rollout;

import io.distillery.schemas.common.ArtefactRef;
import io.distillery.schemas.deployment.DeploymentEvent;
import io.distillery.schemas.deployment.DeploymentRequested;
import io.distillery.schemas.deployment.RolledBack;
import java.util.List;

/**
 * The current stable package of a deployment, folded from its events in topic order: the artefact
 * of the last DeploymentRequested at 100% that was not followed by a RolledBack for it. A
 * RolledBack restores what it names ({@code restored}), or else the stable package before the
 * rolled-back full request.
 */
public final class DeploymentHistory {

  private DeploymentHistory() {}

  /** The stable package, or null when the deployment has none yet. */
  public static ArtefactRef stable(List<DeploymentEvent> events) {
    return stable(events, null);
  }

  /**
   * The stable package, not counting requests for the artefact {@code rollingOut}: an earlier
   * attempt of the same rollout (retried after no node answered) must not make the package its own
   * predecessor.
   */
  public static ArtefactRef stable(List<DeploymentEvent> events, String rollingOut) {
    ArtefactRef stable = null;
    ArtefactRef before = null;
    DeploymentRequested last = null;
    for (DeploymentEvent e : events) {
      switch (e.getPayload()) {
        case DeploymentRequested r when r.getArtefact().getSha256().equals(rollingOut) -> {}
        case DeploymentRequested r -> {
          if (r.getCanaryPercent() >= 100) {
            before = stable;
            stable = r.getArtefact();
          }
          last = r;
        }
        case RolledBack rb -> {
          if (rb.getRestored() != null) {
            stable = rb.getRestored();
          } else if (last != null
              && last.getCanaryPercent() >= 100
              && stable == last.getArtefact()) {
            stable = before;
          }
        }
        default -> {}
      }
    }
    return stable;
  }
}
