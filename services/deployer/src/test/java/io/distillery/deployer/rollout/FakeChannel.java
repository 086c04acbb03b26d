package io.distillery.deployer.rollout;

import io.distillery.schemas.common.ArtefactRef;
import io.distillery.schemas.deployment.DeploymentActive;
import io.distillery.schemas.deployment.DeploymentEvent;
import io.distillery.schemas.deployment.DeploymentRequested;
import io.distillery.schemas.serving.ServingTraffic;
import java.time.Clock;
import java.time.Duration;
import java.time.Instant;
import java.time.ZoneOffset;
import java.util.ArrayList;
import java.util.List;
import java.util.function.BiConsumer;

/**
 * An in-memory deployment channel on a manual clock: a poll with nothing queued advances the clock
 * by its timeout, so time-outs and windows pass instantly. {@code onPublish} plays the serving
 * nodes.
 */
public final class FakeChannel implements DeploymentChannel {

  public final ManualClock clock = new ManualClock();
  public final List<DeploymentEvent> history = new ArrayList<>();
  public final List<DeploymentEvent> published = new ArrayList<>();
  public final List<Observation> queue = new ArrayList<>();
  public BiConsumer<FakeChannel, DeploymentEvent> onPublish = (c, e) -> {};
  public boolean closed;

  @Override
  public List<DeploymentEvent> history() {
    return List.copyOf(history);
  }

  @Override
  public void publish(DeploymentEvent event) {
    published.add(event);
    onPublish.accept(this, event);
  }

  @Override
  public List<Observation> poll(Duration timeout) {
    if (queue.isEmpty()) {
      clock.advance(timeout.toMillis());
      return List.of();
    }
    List<Observation> out = List.copyOf(queue);
    queue.clear();
    clock.advance(1);
    return out;
  }

  @Override
  public void close() {
    closed = true;
  }

  /** A node answering a request for {@code r}'s artefact at its canary share. */
  public void answer(String node, DeploymentRequested r) {
    queue.add(
        new Observation.Deployment(
            DeploymentEvent.newBuilder()
                .setDeploymentId("d")
                .setRunId("r")
                .setTs(clock.instant())
                .setPayload(
                    DeploymentActive.newBuilder()
                        .setNode(node)
                        .setUrl("http://" + node)
                        .setArtefactSha256(r.getArtefact().getSha256())
                        .setCanaryPercent(r.getCanaryPercent())
                        .build())
                .build()));
  }

  public void traffic(ArtefactRef a, long requests, long misfires) {
    queue.add(
        new Observation.Traffic(
            ServingTraffic.newBuilder()
                .setDeploymentId("d")
                .setNode("n1")
                .setArtefactSha256(a.getSha256())
                .setRequests(requests)
                .setErrors(0)
                .setMisfires(misfires)
                .setIntervalStart(clock.instant().minusMillis(500))
                .setTs(clock.instant())
                .build()));
  }

  /** A clock the test moves. */
  public static final class ManualClock extends Clock {
    private long millis = 1_700_000_000_000L;

    public void advance(long ms) {
      millis += ms;
    }

    @Override
    public ZoneOffset getZone() {
      return ZoneOffset.UTC;
    }

    @Override
    public Clock withZone(java.time.ZoneId zone) {
      return this;
    }

    @Override
    public long millis() {
      return millis;
    }

    @Override
    public Instant instant() {
      return Instant.ofEpochMilli(millis);
    }
  }
}
