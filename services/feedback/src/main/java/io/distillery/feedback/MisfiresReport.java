package io.distillery.feedback;

import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.distillery.schemas.deployment.DeploymentEvent;
import io.distillery.schemas.deployment.DeploymentRequested;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.TreeSet;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.state.KeyValueIterator;
import org.apache.kafka.streams.state.ReadOnlyKeyValueStore;

/**
 * The JSON of {@code GET /misfires[/{deploymentId}]}, read from the processor's stores (Streams
 * interactive queries over this instance's tasks): per deployment its current windows (distinct
 * misfires, repeats, requests, rate, judged or open, over the thresholds or not), cool-down and
 * daily-cap state, and past triggers with their run ids.
 */
final class MisfiresReport {

  /**
   * The stores of this instance; each lookup may throw while Streams rebalances (the endpoint
   * answers 503).
   */
  interface Stores {
    ReadOnlyKeyValueStore<String, DeploymentEvent> deployments();

    ReadOnlyKeyValueStore<String, MisfireWindow> windows();

    ReadOnlyKeyValueStore<String, TriggerState> triggers();
  }

  private final TriggerPolicy policy;
  private final Stores stores;

  MisfiresReport(TriggerPolicy policy, Stores stores) {
    this.policy = policy;
    this.stores = stores;
  }

  ObjectNode all(long now) {
    ObjectNode root = JsonSerde.JSON.createObjectNode();
    root.set("thresholds", thresholds());
    ArrayNode list = root.putArray("deployments");
    TreeSet<String> ids = new TreeSet<>();
    try (KeyValueIterator<String, DeploymentEvent> it = stores.deployments().all()) {
      it.forEachRemaining(kv -> ids.add(kv.key));
    }
    try (KeyValueIterator<String, TriggerState> it = stores.triggers().all()) {
      it.forEachRemaining(kv -> ids.add(kv.key));
    }
    ids.forEach(id -> one(id, now).ifPresent(list::add));
    return root;
  }

  Optional<ObjectNode> one(String deploymentId, long now) {
    DeploymentEvent dep = stores.deployments().get(deploymentId);
    TriggerState state = stores.triggers().get(deploymentId);
    if (dep == null && state == null) {
      return Optional.empty();
    }
    state = state == null ? TriggerState.initial(deploymentId) : state;
    long clock = Math.max(state.maxEventTs(), now);
    ObjectNode o = JsonSerde.JSON.createObjectNode();
    o.put("deploymentId", deploymentId);
    o.put("known", dep != null);
    if (dep != null && dep.getPayload() instanceof DeploymentRequested r) {
      o.put("parentRun", dep.getRunId());
      o.put("artefact", r.getArtefact().getUri());
      o.put(
          "teacher",
          r.getTeacher() != null ? r.getTeacher().getUri() : r.getLabels().get("teacher"));
      o.put("student", r.getLabels().get("student"));
      o.put("redistillRecipe", r.getLabels().get("redistillRecipe"));
    }
    ArrayNode ws = o.putArray("windows");
    List<MisfireWindow> windows = new ArrayList<>();
    try (KeyValueIterator<String, MisfireWindow> it =
        stores
            .windows()
            .prefixScan(
                MisfireWindowProcessor.prefix(deploymentId), Serdes.String().serializer())) {
      it.forEachRemaining(kv -> windows.add(kv.value));
    }
    for (MisfireWindow w : windows) {
      ObjectNode n = ws.addObject();
      n.put("start", Instant.ofEpochMilli(w.start()).toString());
      n.put("end", Instant.ofEpochMilli(w.end()).toString());
      n.put("startMs", w.start());
      n.put("endMs", w.end());
      n.put("misfires", w.misfires());
      n.put("duplicates", w.duplicates());
      n.put("requests", w.requests());
      n.put("rate", w.rate());
      n.put("judged", w.end() <= state.closedUpTo());
      n.put("overThreshold", policy.tripped(w));
    }
    long until = policy.coolDownUntil(state);
    o.put("coolingDown", until > clock);
    if (until >= 0) {
      o.put("coolDownUntil", Instant.ofEpochMilli(until).toString());
    } else {
      o.putNull("coolDownUntil");
    }
    long today = TriggerPolicy.day(clock);
    o.put("runsToday", state.runsOn(today));
    o.put("maxRunsPerDay", policy.maxRunsPerDay());
    o.put("suppressedByCoolDown", state.suppressedByCoolDown());
    o.put("suppressedByDailyCap", state.suppressedByDailyCap());
    ArrayNode ts = o.putArray("triggers");
    for (Trigger t : state.triggers()) {
      ObjectNode n = ts.addObject();
      n.put("runId", t.runId());
      n.put("outcome", t.outcome().name());
      n.put("windowStart", Instant.ofEpochMilli(t.windowStart()).toString());
      n.put("windowEnd", Instant.ofEpochMilli(t.windowEnd()).toString());
      n.put("misfires", t.misfires());
      n.put("requests", t.requests());
      n.put("rate", t.rate());
      n.put("dataset", t.datasetUri());
      n.put("reason", t.reason());
      n.put("at", Instant.ofEpochMilli(t.at()).toString());
    }
    return Optional.of(o);
  }

  ObjectNode thresholds() {
    ObjectNode t = JsonSerde.JSON.createObjectNode();
    t.put("minRate", policy.minRate());
    t.put("minMisfires", policy.minMisfires());
    t.put("window", policy.window().toString());
    t.put("advance", policy.advance().toString());
    t.put("grace", policy.grace().toString());
    t.put("coolDown", policy.coolDown().toString());
    t.put("maxRunsPerDay", policy.maxRunsPerDay());
    return t;
  }
}
