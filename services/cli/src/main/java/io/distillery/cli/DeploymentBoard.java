package io.distillery.cli;

import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.distillery.schemas.common.ArtefactRef;
import io.distillery.schemas.deployment.DeploymentActive;
import io.distillery.schemas.deployment.DeploymentEvent;
import io.distillery.schemas.deployment.DeploymentRequested;
import io.distillery.schemas.deployment.RolledBack;
import io.distillery.schemas.misfire.Misfire;
import io.distillery.schemas.serving.ServingTraffic;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;

/**
 * What the runs page shows about deployments, folded in topic order from {@code
 * distillery.deployments}, {@code distillery.serving.traffic} and {@code distillery.misfires} (all
 * keyed by deploymentId): the active (stable) package, the canary and its state, the nodes serving,
 * the rollbacks, and the misfire rate per minute.
 *
 * <p>The stable package follows the deployer's rule (DeploymentHistory): the last request at 100%,
 * undone by a RolledBack, which restores what it names or else the package before. A canary is a
 * request below 100%; it is {@code requested} until a node reports it active ({@code serving}),
 * then {@code promoted} by a 100% request of the same artefact or {@code rolled back}.
 *
 * <p>The misfire rate is derived here from the two topics rather than read from the feedback
 * service's {@code /misfires} view: the topics hold the whole history (the feedback store drops a
 * window one window length after judging it), need no second service to be up, reachable or done
 * rebalancing, and work when feedback runs elsewhere. It is counted as feedback counts a window:
 * distinct misfired prompts over the requests the nodes reported, in one-minute buckets (feedback's
 * default window advance).
 */
final class DeploymentBoard {

  static final long BUCKET_MS = 60_000;

  /** Buckets kept per deployment: the last four hours. */
  static final int MAX_BUCKETS = 240;

  static final int MAX_ROLLBACKS = 20;

  private final Map<String, Deployment> deployments = new TreeMap<>();

  /** Folds one event of the deployments topic; returns its deployment id. */
  String deployment(DeploymentEvent e) {
    Deployment d = deployments.computeIfAbsent(e.getDeploymentId(), Deployment::new);
    d.runId = e.getRunId();
    d.updatedAt = Math.max(d.updatedAt, e.getTs().toEpochMilli());
    switch (e.getPayload()) {
      case DeploymentRequested r -> d.requested(r, e.getTs().toEpochMilli());
      case DeploymentActive a -> d.active(a, e.getTs().toEpochMilli());
      case RolledBack rb -> d.rolledBack(rb, e.getTs().toEpochMilli());
      default ->
          throw new IllegalArgumentException(
              "unknown deployment payload " + e.getPayload().getClass());
    }
    return d.id;
  }

  /** Counts a node's requests into the bucket of its interval's end. */
  String traffic(ServingTraffic t) {
    Deployment d = deployments.computeIfAbsent(t.getDeploymentId(), Deployment::new);
    d.bucket(t.getTs().toEpochMilli()).requests += t.getRequests();
    return d.id;
  }

  /**
   * Counts a misfire once per distinct prompt and bucket (a repeated prompt is a duplicate, as in
   * feedback).
   */
  String misfire(Misfire m) {
    Deployment d = deployments.computeIfAbsent(m.getDeploymentId(), Deployment::new);
    Bucket b = d.bucket(m.getTs().toEpochMilli());
    if (!b.prompts.add(m.getPrompt())) {
      b.duplicates++;
    }
    return d.id;
  }

  List<String> ids() {
    return List.copyOf(deployments.keySet());
  }

  ObjectNode json(String deploymentId) {
    Deployment d = deployments.get(deploymentId);
    if (d == null) {
      throw new IllegalArgumentException("no deployment '" + deploymentId + "' on the board");
    }
    return d.json();
  }

  private static final class Bucket {
    long requests;
    long duplicates;
    final Set<String> prompts = new HashSet<>();
  }

  private record Node(String node, String url, String sha256, int percent, long since) {}

  private record Rollback(long ts, String reason, String restoredSha256) {}

  private static final class Deployment {
    final String id;
    String runId;
    String target;
    long updatedAt;
    ArtefactRef stable;
    long stableSince;
    ArtefactRef beforeStable;
    DeploymentRequested lastRequest;
    ArtefactRef canary;
    int canaryPercent;
    String canaryState;
    long canarySince;
    final Map<String, Node> nodes = new TreeMap<>();
    final List<Rollback> rollbacks = new ArrayList<>();
    int rollbackCount;
    final TreeMap<Long, Bucket> buckets = new TreeMap<>();

    Deployment(String id) {
      this.id = id;
    }

    void requested(DeploymentRequested r, long ts) {
      target = r.getTarget();
      lastRequest = r;
      String sha = r.getArtefact().getSha256();
      if (r.getCanaryPercent() >= 100) {
        if (canary != null
            && canary.getSha256().equals(sha)
            && !"rolled back".equals(canaryState)) {
          canaryState = "promoted";
          canarySince = ts;
        }
        if (stable == null || !stable.getSha256().equals(sha)) {
          beforeStable = stable;
          stable = r.getArtefact();
          stableSince = ts;
        }
      } else {
        canary = r.getArtefact();
        canaryPercent = r.getCanaryPercent();
        canaryState = "requested";
        canarySince = ts;
      }
    }

    void active(DeploymentActive a, long ts) {
      nodes.put(
          a.getNode() + " " + a.getArtefactSha256(),
          new Node(a.getNode(), a.getUrl(), a.getArtefactSha256(), a.getCanaryPercent(), ts));
      if (canary != null
          && canary.getSha256().equals(a.getArtefactSha256())
          && "requested".equals(canaryState)
          && a.getCanaryPercent() < 100) {
        canaryState = "serving";
        canarySince = ts;
      }
    }

    void rolledBack(RolledBack rb, long ts) {
      rollbackCount++;
      rollbacks.add(
          new Rollback(
              ts, rb.getReason(), rb.getRestored() == null ? null : rb.getRestored().getSha256()));
      if (rollbacks.size() > MAX_ROLLBACKS) {
        rollbacks.removeFirst();
      }
      if (canary != null && !"promoted".equals(canaryState)) {
        canaryState = "rolled back";
        canarySince = ts;
      }
      if (rb.getRestored() != null) {
        if (stable == null || !stable.getSha256().equals(rb.getRestored().getSha256())) {
          stable = rb.getRestored();
          stableSince = ts;
        }
      } else if (lastRequest != null
          && lastRequest.getCanaryPercent() >= 100
          && stable != null
          && stable.getSha256().equals(lastRequest.getArtefact().getSha256())) {
        stable = beforeStable;
        stableSince = ts;
      }
      // a node still reporting the rolled-back canary is no longer serving it
      String gone = canary == null ? null : canary.getSha256();
      nodes.values().removeIf(n -> n.sha256().equals(gone) && "rolled back".equals(canaryState));
    }

    Bucket bucket(long ts) {
      long start = Math.floorDiv(ts, BUCKET_MS) * BUCKET_MS;
      Bucket b = buckets.computeIfAbsent(start, k -> new Bucket());
      while (buckets.size() > MAX_BUCKETS) {
        buckets.pollFirstEntry();
      }
      updatedAt = Math.max(updatedAt, ts);
      return b;
    }

    ObjectNode json() {
      ObjectNode o = RunStateJson.JSON.createObjectNode();
      o.put("deploymentId", id);
      o.put("runId", runId);
      o.put("target", target);
      o.put("updatedAt", updatedAt);
      if (stable != null) {
        ObjectNode s = artefact(o.putObject("active"), stable);
        s.put("since", stableSince);
        s.put(
            "nodes",
            nodes.values().stream().filter(n -> n.sha256().equals(stable.getSha256())).count());
      } else {
        o.putNull("active");
      }
      if (canary != null) {
        ObjectNode c = artefact(o.putObject("canary"), canary);
        c.put("percent", canaryPercent);
        c.put("state", canaryState);
        c.put("since", canarySince);
      } else {
        o.putNull("canary");
      }
      ArrayNode ns = o.putArray("nodes");
      for (Node n : nodes.values()) {
        ns.addObject()
            .put("node", n.node())
            .put("url", n.url())
            .put("sha256", n.sha256())
            .put("percent", n.percent())
            .put("since", n.since());
      }
      o.put("rollbackCount", rollbackCount);
      ArrayNode rs = o.putArray("rollbacks");
      for (Rollback r : rollbacks) {
        rs.addObject()
            .put("ts", r.ts())
            .put("reason", r.reason())
            .put("restored", r.restoredSha256());
      }
      ArrayNode series = o.putArray("misfires");
      for (Map.Entry<Long, Bucket> e : buckets.entrySet()) {
        Bucket b = e.getValue();
        ObjectNode p = series.addObject();
        p.put("t", e.getKey());
        p.put("requests", b.requests);
        p.put("misfires", b.prompts.size());
        p.put("duplicates", b.duplicates);
        if (b.requests > 0) {
          p.put("rate", (double) b.prompts.size() / b.requests);
        } else {
          p.putNull(
              "rate"); // misfires without reported requests: no rate (feedback counts 0 and trips
          // nothing)
        }
      }
      return o;
    }

    private static ObjectNode artefact(ObjectNode o, ArtefactRef a) {
      return o.put("sha256", a.getSha256())
          .put("uri", a.getUri())
          .put("bytes", a.getBytes())
          .put("format", a.getFormat());
    }
  }

  /** For tests: every deployment's JSON by id. */
  Map<String, ObjectNode> all() {
    Map<String, ObjectNode> m = new LinkedHashMap<>();
    deployments.keySet().forEach(id -> m.put(id, json(id)));
    return m;
  }
}
