package io.distillery.deployer.rollout;

import io.distillery.schemas.deployment.DeploymentEvent;
import io.distillery.schemas.misfire.Misfire;
import io.distillery.schemas.serving.ServingTraffic;
import io.distillery.stage.StageException;
import java.time.Duration;
import java.util.List;

/**
 * The rollout's view of the cluster for one deployment: its history on {@code
 * distillery.deployments}, a way to publish deployment events, and what the serving nodes report
 * from the moment the channel was opened (deployment answers, traffic counts, misfires). {@link
 * Rollout} holds the logic; an implementation only moves events.
 */
public interface DeploymentChannel extends AutoCloseable {

  /** Every event of this deployment written before the channel was opened, in topic order. */
  List<DeploymentEvent> history() throws StageException, InterruptedException;

  /** Writes an event keyed by its deployment id and waits for the broker's acknowledgement. */
  void publish(DeploymentEvent event) throws StageException, InterruptedException;

  /**
   * What arrived for this deployment since the last call (or since opening), waiting up to {@code
   * timeout}.
   */
  List<Observation> poll(Duration timeout) throws StageException, InterruptedException;

  @Override
  void close();

  /** One event a serving node (or a user) wrote about this deployment. */
  sealed interface Observation {
    record Deployment(DeploymentEvent event) implements Observation {}

    record Traffic(ServingTraffic traffic) implements Observation {}

    record Misfired(Misfire misfire) implements Observation {}
  }
}
