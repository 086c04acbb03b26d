package io.distillery.cli;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.distillery.schemas.common.ArtefactRef;
import io.distillery.schemas.run.RunState;
import io.distillery.schemas.run.StageState;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

/** A run as plain JSON for {@code status --json}: stages, artefacts, metrics, verdict. */
final class RunStateJson {

  static final ObjectMapper JSON = new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT);

  private RunStateJson() {}

  static ObjectNode of(RunState r) {
    ObjectNode o = JSON.createObjectNode();
    o.put("runId", r.getRunId());
    o.put("modelId", r.getModelId());
    o.put("recipe", r.getRecipeName());
    o.put("status", r.getStatus().name());
    o.put("verdict", r.getVerdict());
    o.put("reason", r.getReason());
    o.put("createdAt", r.getCreatedAt().toString());
    o.put("updatedAt", r.getUpdatedAt().toString());
    o.set("model", artefact(r.getModel()));
    o.set("labels", JSON.valueToTree(new TreeMap<>(r.getLabels())));
    ArrayNode stages = o.putArray("stages");
    for (StageState s : r.getStages()) {
      ObjectNode n = stages.addObject();
      n.put("node", s.getNode());
      n.put("stage", s.getStage());
      n.set("after", JSON.valueToTree(s.getAfter()));
      n.put("status", s.getStatus().name());
      n.put("attempt", s.getAttempt());
      n.put("percent", s.getPercent());
      n.put("message", s.getMessage());
      n.put("cached", s.getCached());
      n.put("completions", s.getCompletions());
      n.put("worker", s.getWorker());
      n.put("reason", s.getReason());
      ArrayNode outs = n.putArray("artefacts");
      s.getOutputs().forEach(a -> outs.add(artefact(a)));
      n.set("metrics", JSON.valueToTree(new TreeMap<>(s.getMetrics())));
      if (s.getStartedAt() != null && s.getCompletedAt() != null) {
        n.put("seconds", (s.getCompletedAt() - s.getStartedAt()) / 1000.0);
      }
    }
    return o;
  }

  static String text(RunState r) {
    try {
      return JSON.writeValueAsString(of(r));
    } catch (JsonProcessingException e) {
      throw new IllegalStateException(e);
    }
  }

  static String text(List<RunState> runs) {
    ArrayNode a = JSON.createArrayNode();
    runs.forEach(r -> a.add(of(r)));
    try {
      return JSON.writeValueAsString(a);
    } catch (JsonProcessingException e) {
      throw new IllegalStateException(e);
    }
  }

  private static ObjectNode artefact(ArtefactRef a) {
    ObjectNode o = JSON.createObjectNode();
    o.put("uri", a.getUri());
    o.put("sha256", a.getSha256());
    o.put("bytes", a.getBytes());
    o.put("format", a.getFormat());
    return o;
  }

  static Map<String, Double> sorted(Map<String, Double> m) {
    return new TreeMap<>(m);
  }
}
