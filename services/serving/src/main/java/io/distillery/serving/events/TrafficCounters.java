package io.distillery.serving.events;

import io.distillery.schemas.serving.ServingTraffic;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicLong;

/**
 * Request, error and misfire counts per (deployment, artefact) since the last report: the
 * denominator the deployer and the feedback service divide misfires by. {@link #drain} turns the
 * interval into {@link ServingTraffic} records and starts the next one.
 */
public final class TrafficCounters {

  private record Key(String deploymentId, String artefactSha256) {}

  private static final class Counts {
    final AtomicLong requests = new AtomicLong();
    final AtomicLong errors = new AtomicLong();
    final AtomicLong misfires = new AtomicLong();
  }

  private final String node;
  private final Map<Key, Counts> counts = new ConcurrentHashMap<>();
  private long intervalStart;

  public TrafficCounters(String node, long nowMillis) {
    this.node = node;
    this.intervalStart = nowMillis;
  }

  private Counts of(String deploymentId, String sha) {
    return counts.computeIfAbsent(new Key(deploymentId, sha), k -> new Counts());
  }

  public void request(String deploymentId, String sha) {
    of(deploymentId, sha).requests.incrementAndGet();
  }

  public void error(String deploymentId, String sha) {
    of(deploymentId, sha).errors.incrementAndGet();
  }

  public void misfire(String deploymentId, String sha) {
    of(deploymentId, sha).misfires.incrementAndGet();
  }

  /** Records of the interval ending now (only artefacts with any count), resetting the counts. */
  public synchronized List<ServingTraffic> drain(long nowMillis) {
    List<ServingTraffic> out = new ArrayList<>();
    for (Map.Entry<Key, Counts> e : counts.entrySet()) {
      long requests = e.getValue().requests.getAndSet(0);
      long errors = e.getValue().errors.getAndSet(0);
      long misfires = e.getValue().misfires.getAndSet(0);
      if (requests + errors + misfires > 0) {
        out.add(
            ServingTraffic.newBuilder()
                .setDeploymentId(e.getKey().deploymentId())
                .setNode(node)
                .setArtefactSha256(e.getKey().artefactSha256())
                .setRequests(requests)
                .setErrors(errors)
                .setMisfires(misfires)
                .setIntervalStart(Instant.ofEpochMilli(intervalStart))
                .setTs(Instant.ofEpochMilli(nowMillis))
                .build());
      }
    }
    intervalStart = nowMillis;
    return out;
  }
}
