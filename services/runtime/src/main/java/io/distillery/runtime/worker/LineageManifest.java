package io.distillery.runtime.worker;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.distillery.schemas.common.ArtefactRef;
import io.distillery.schemas.job.StageInput;
import io.distillery.schemas.job.StageJob;
import io.distillery.stage.ArtefactFormats;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;

/**
 * The lineage of a checkpoint a stage wrote, {@value #FILE_NAME} inside it: which run, job and
 * stage made it, with which params, from which model and inputs, and its metrics. The worker host
 * writes it for every checkpoint output (formats in {@link ArtefactFormats#CHECKPOINTS}) before the
 * output enters the store, so every stage's checkpoints carry one and no stage writes its own.
 */
public final class LineageManifest {

  public static final String FILE_NAME = "distillery-manifest.json";

  private static final ObjectMapper JSON =
      new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT);

  private LineageManifest() {}

  /**
   * Writes the manifest into {@code output} when it is a checkpoint directory without one; other
   * outputs are left alone, and so is a checkpoint a stage passes on unchanged (the evaluator's
   * chosen candidate keeps the lineage of the stage that made it, and with it its content hash).
   */
  static void writeIfCheckpoint(
      Path output, String format, String stage, StageJob job, Map<String, Double> metrics)
      throws IOException {
    if (!ArtefactFormats.CHECKPOINTS.contains(format)
        || !Files.isDirectory(output)
        || Files.exists(output.resolve(FILE_NAME))) {
      return;
    }
    ObjectNode root = JSON.createObjectNode();
    root.put("stage", stage);
    root.put("runId", job.getRunId());
    root.put("jobId", job.getJobId());
    root.put("attempt", job.getAttempt());
    root.set("params", params(job.getParams()));
    if (!job.getModel().getUri().isBlank()) {
      root.set("model", ref(job.getModel()));
    }
    ArrayNode inputs = root.putArray("inputs");
    for (StageInput in : job.getInputs()) {
      for (ArtefactRef r : in.getArtefacts()) {
        inputs.add(ref(r).put("node", in.getNode()).put("stage", in.getStage()));
      }
    }
    ObjectNode m = root.putObject("metrics");
    metrics.forEach(m::put);
    Files.writeString(output.resolve(FILE_NAME), JSON.writeValueAsString(root) + "\n");
  }

  private static JsonNode params(String json) throws IOException {
    return json == null || json.isBlank() ? JSON.createObjectNode() : JSON.readTree(json);
  }

  private static ObjectNode ref(ArtefactRef r) {
    return JSON.createObjectNode()
        .put("uri", r.getUri())
        .put("sha256", r.getSha256())
        .put("bytes", r.getBytes())
        .put("format", r.getFormat());
  }
}
