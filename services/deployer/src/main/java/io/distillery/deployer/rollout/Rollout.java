package io.distillery.deployer.rollout;

import io.distillery.schemas.common.ArtefactRef;
import io.distillery.schemas.deployment.DeploymentActive;
import io.distillery.schemas.deployment.DeploymentEvent;
import io.distillery.schemas.deployment.DeploymentRequested;
import io.distillery.schemas.deployment.RolledBack;
import io.distillery.schemas.misfire.Misfire;
import io.distillery.schemas.serving.ServingTraffic;
import io.distillery.stage.ProgressSink;
import io.distillery.stage.StageException;
import java.time.Clock;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The rollout protocol between the deployer and the serving nodes of one deployment (see the
 * contracts in prompts/protocol.md), over a {@link DeploymentChannel}:
 *
 * <ol>
 *   <li>find the stable package (the deployment's history); with a canary share below 100% and a
 *       different stable package, request the new one as canary, wait for a node's
 *       DeploymentActive, and watch traffic and misfires through a {@link CanaryWindow}; a bad
 *       canary is answered with RolledBack and a rejected verdict;
 *   <li>request the package at 100% (promotion), wait for DeploymentActive at 100% from at least
 *       one node, and report what was measured.
 * </ol>
 *
 * No node answering in time is a retryable failure naming the deployment.
 */
public final class Rollout {

  private static final Logger LOG = LoggerFactory.getLogger(Rollout.class);
  private static final Duration POLL = Duration.ofMillis(200);

  private final DeploymentChannel channel;
  private final Clock clock;
  private final ProgressSink progress;

  /**
   * Observations that arrived while waiting for a node, kept for the canary window (which filters
   * them by time).
   */
  private final List<DeploymentChannel.Observation> backlog = new ArrayList<>();

  public Rollout(DeploymentChannel channel, Clock clock, ProgressSink progress) {
    this.channel = channel;
    this.clock = clock;
    this.progress = progress;
  }

  /**
   * What to roll out and how.
   *
   * @param labels lineage for DeploymentRequested.labels
   */
  public record Plan(
      String deploymentId,
      String runId,
      ArtefactRef artefact,
      String target,
      int canaryPercent,
      ArtefactRef teacher,
      Map<String, String> labels,
      Duration activeTimeout,
      Duration canaryWindow,
      long canaryMinRequests,
      double rollbackMargin) {
    public Plan {
      labels = Map.copyOf(labels);
    }
  }

  /** What a completed rollout measured. */
  public record Outcome(
      ArtefactRef previous,
      boolean canaried,
      CanaryWindow.Tally canary,
      CanaryWindow.Tally stable,
      Set<String> nodes,
      double secondsToActive) {

    public Map<String, Double> metrics() {
      Map<String, Double> m = new LinkedHashMap<>();
      m.put("canaryRequests", (double) canary.requests());
      m.put("canaryMisfireRate", canary.rate());
      m.put("stableMisfireRate", stable.rate());
      m.put("nodes", (double) nodes.size());
      m.put("secondsToActive", secondsToActive);
      m.put("canaried", canaried ? 1.0 : 0.0);
      return m;
    }
  }

  public Outcome run(Plan plan) throws StageException, InterruptedException {
    String sha = plan.artefact().getSha256();
    ArtefactRef previous = DeploymentHistory.stable(channel.history(), sha);
    boolean canary =
        plan.canaryPercent() < 100 && previous != null && !previous.getSha256().equals(sha);
    if (plan.canaryPercent() < 100 && !canary) {
      LOG.info(
          "deployment={} runId={} canaryPercent={} skipped: {}",
          plan.deploymentId(),
          plan.runId(),
          plan.canaryPercent(),
          previous == null
              ? "no stable package to compare with"
              : "the stable package is this one");
    }
    progress.progress(
        12,
        "deployment "
            + plan.deploymentId()
            + ": stable package "
            + (previous == null ? "none" : CanaryWindow.shortSha(previous.getSha256())),
        Map.of());
    CanaryWindow.Tally none = new CanaryWindow.Tally(0, 0, 0);
    CanaryWindow.Tally canaryTally = none;
    CanaryWindow.Tally stableTally = none;
    long requestedAt = clock.millis();
    Double secondsToActive = null;
    if (canary) {
      publishRequest(plan, plan.canaryPercent(), previous);
      Active active = awaitActive(plan, plan.canaryPercent(), 15, 25);
      secondsToActive = (active.observedAt() - requestedAt) / 1000.0;
      CanaryWindow.Verdict verdict = watch(plan, previous, active);
      canaryTally = verdict.canary();
      stableTally = verdict.stable();
      if (verdict instanceof CanaryWindow.Verdict.RollBack rb) {
        String reason =
            "deployment "
                + plan.deploymentId()
                + ": "
                + rb.reason()
                + "; rolled back to "
                + CanaryWindow.shortSha(previous.getSha256());
        channel.publish(
            event(plan, RolledBack.newBuilder().setReason(reason).setRestored(previous).build()));
        LOG.warn(
            "deployment={} runId={} rolledBack canary={} reason={}",
            plan.deploymentId(),
            plan.runId(),
            CanaryWindow.shortSha(sha),
            reason);
        throw StageException.rejected(reason);
      }
      LOG.info(
          "deployment={} runId={} canary={} promoted canaryRate={} stableRate={} canaryRequests={}",
          plan.deploymentId(),
          plan.runId(),
          CanaryWindow.shortSha(sha),
          canaryTally.rate(),
          stableTally.rate(),
          canaryTally.requests());
    }
    long promotedAt = clock.millis();
    publishRequest(plan, 100, previous);
    Active active = awaitActive(plan, 100, 88, 98);
    if (secondsToActive == null) {
      secondsToActive = (active.observedAt() - promotedAt) / 1000.0;
    }
    LOG.info(
        "deployment={} runId={} artefact={} active nodes={} url={}",
        plan.deploymentId(),
        plan.runId(),
        CanaryWindow.shortSha(sha),
        active.nodes(),
        active.event().getUrl());
    return new Outcome(previous, canary, canaryTally, stableTally, active.nodes(), secondsToActive);
  }

  private void publishRequest(Plan plan, int percent, ArtefactRef previous)
      throws StageException, InterruptedException {
    DeploymentRequested r =
        DeploymentRequested.newBuilder()
            .setArtefact(plan.artefact())
            .setTarget(plan.target())
            .setCanaryPercent(percent)
            .setPrevious(previous)
            .setTeacher(plan.teacher())
            .setLabels(new LinkedHashMap<>(plan.labels()))
            .build();
    channel.publish(event(plan, r));
    LOG.info(
        "deployment={} runId={} requested artefact={} canaryPercent={} previous={}",
        plan.deploymentId(),
        plan.runId(),
        CanaryWindow.shortSha(plan.artefact().getSha256()),
        percent,
        previous == null ? "none" : CanaryWindow.shortSha(previous.getSha256()));
  }

  private DeploymentEvent event(Plan plan, Object payload) {
    return DeploymentEvent.newBuilder()
        .setDeploymentId(plan.deploymentId())
        .setRunId(plan.runId())
        .setTs(clock.instant())
        .setPayload(payload)
        .build();
  }

  /**
   * The first DeploymentActive for the package at {@code percent}, and the nodes that answered so
   * far.
   */
  private record Active(
      DeploymentActive event, long activeAtMillis, long observedAt, Set<String> nodes) {}

  private Active awaitActive(Plan plan, int percent, double fromPercent, double toPercent)
      throws StageException, InterruptedException {
    String sha = plan.artefact().getSha256();
    long start = clock.millis();
    long deadline = start + plan.activeTimeout().toMillis();
    Set<String> nodes = new LinkedHashSet<>();
    backlog.clear();
    while (true) {
      Active found = null;
      for (DeploymentChannel.Observation o : channel.poll(POLL)) {
        if (found == null
            && o instanceof DeploymentChannel.Observation.Deployment(DeploymentEvent e)
            && e.getPayload() instanceof DeploymentActive a
            && a.getArtefactSha256().equals(sha)
            && a.getCanaryPercent() == percent) {
          nodes.add(a.getNode());
          found = new Active(a, e.getTs().toEpochMilli(), clock.millis(), nodes);
        } else {
          backlog.add(o);
        }
      }
      if (found != null) {
        return found;
      }
      long now = clock.millis();
      if (now >= deadline) {
        throw StageException.retryable(
            "no serving node answered for deployment "
                + plan.deploymentId()
                + " within "
                + plan.activeTimeout().toSeconds()
                + "s (waiting for DeploymentActive of "
                + CanaryWindow.shortSha(sha)
                + " at "
                + percent
                + "%)",
            null);
      }
      double f = (double) (now - start) / Math.max(1, deadline - start);
      progress.progress(
          fromPercent + (toPercent - fromPercent) * f,
          "waiting for serving nodes of deployment " + plan.deploymentId() + " (" + percent + "%)",
          Map.of());
    }
  }

  private CanaryWindow.Verdict watch(Plan plan, ArtefactRef previous, Active active)
      throws StageException, InterruptedException {
    CanaryWindow window =
        new CanaryWindow(
            plan.artefact().getSha256(),
            previous.getSha256(),
            active.activeAtMillis(),
            plan.canaryWindow().toMillis(),
            plan.canaryMinRequests(),
            plan.rollbackMargin());
    long start = clock.millis();
    while (true) {
      List<DeploymentChannel.Observation> batch = new ArrayList<>(backlog);
      backlog.clear();
      batch.addAll(channel.poll(POLL));
      for (DeploymentChannel.Observation o : batch) {
        switch (o) {
          case DeploymentChannel.Observation.Traffic(ServingTraffic t) ->
              window.traffic(
                  t.getArtefactSha256(),
                  t.getRequests(),
                  t.getErrors(),
                  t.getMisfires(),
                  t.getTs().toEpochMilli());
          case DeploymentChannel.Observation.Misfired(Misfire m) ->
              window.misfire(m.getArtefactSha256(), m.getReason(), m.getTs().toEpochMilli());
          case DeploymentChannel.Observation.Deployment d -> {}
        }
      }
      CanaryWindow.Verdict v = window.decide(clock.millis() - start);
      if (!(v instanceof CanaryWindow.Verdict.KeepWaiting k)) {
        return v;
      }
      progress.progress(
          25 + 60 * k.progress(),
          String.format(
              Locale.ROOT,
              "canary %d%% of deployment %s: %.0f%% of the window, %d canary requests",
              plan.canaryPercent(),
              plan.deploymentId(),
              100 * k.progress(),
              k.canary().requests()),
          Map.of(
              "canaryRequests",
              (double) k.canary().requests(),
              "canaryMisfireRate",
              k.canary().rate(),
              "stableMisfireRate",
              k.stable().rate()));
    }
  }
}
