package io.distillery.evaluator.report;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.distillery.evaluator.gate.Assessment;
import io.distillery.evaluator.gate.GateKey;
import io.distillery.evaluator.gate.GateResult;
import io.distillery.evaluator.measure.CandidateMetrics;
import io.distillery.evaluator.measure.Latency;
import io.distillery.stage.ArtefactFormats;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;

/**
 * The evaluator's report artefact ({@code eval-report}): {@value #JSON_FILE} with every candidate,
 * every metric, each gate's verdict with its reason and the pick, and {@value #HTML_FILE}, the same
 * as one self-contained page (see {@link ReportPage}).
 *
 * @param runId the run, or null outside a run
 * @param dataSource where the eval prompts came from
 * @param misfires held-out misfires evaluated (0 for none)
 * @param retentionBasis {@code exactMatch} or {@code perplexity} (see {@code Comparison})
 * @param pick the pick rule's id
 * @param gates gate id to threshold
 * @param reference the reference (registered model) measured the same way
 * @param baselineMisfireExactMatch the deployed baseline's exact match on the held-out misfires;
 *     NaN without one
 * @param candidates every candidate with its verdict
 * @param chosen the chosen candidate's name; null when none passed
 * @param mode {@value #WHOLE_MODEL} (each model loaded whole, generation and latency measured) or
 *     {@value #STREAMED} (one teacher-forced pass streamed one decoder layer at a time: no latency)
 * @param note why something was not measured (the streamed mode's reason), or null
 */
public record EvaluationReport(
    String runId,
    String dataSource,
    int misfires,
    String retentionBasis,
    String pick,
    Map<GateKey, Double> gates,
    CandidateMetrics reference,
    double baselineMisfireExactMatch,
    List<Entry> candidates,
    String chosen,
    String mode,
    String note) {

  public static final String WHOLE_MODEL = "whole-model";
  public static final String STREAMED = "streamed";

  public static final String FORMAT = ArtefactFormats.EVAL_REPORT;
  public static final String JSON_FILE = "report.json";
  public static final String HTML_FILE = "report.html";

  private static final ObjectMapper JSON =
      new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT);

  public EvaluationReport {
    gates = Map.copyOf(gates);
    candidates = List.copyOf(candidates);
    mode = mode == null ? WHOLE_MODEL : mode;
  }

  /** A whole-model report (everything measured). */
  public EvaluationReport(
      String runId,
      String dataSource,
      int misfires,
      String retentionBasis,
      String pick,
      Map<GateKey, Double> gates,
      CandidateMetrics reference,
      double baselineMisfireExactMatch,
      List<Entry> candidates,
      String chosen) {
    this(
        runId,
        dataSource,
        misfires,
        retentionBasis,
        pick,
        gates,
        reference,
        baselineMisfireExactMatch,
        candidates,
        chosen,
        WHOLE_MODEL,
        null);
  }

  /** One candidate: what it is, what it measured, how it fared at the gates. */
  public record Entry(
      CandidateMetrics metrics, String format, String uri, String sha256, Assessment assessment) {}

  /** Writes {@value #JSON_FILE} and {@value #HTML_FILE} into {@code dir} (created). */
  public Path write(Path dir) throws IOException {
    Files.createDirectories(dir);
    JSON.writeValue(dir.resolve(JSON_FILE).toFile(), toJson());
    Files.writeString(dir.resolve(HTML_FILE), ReportPage.render(this), StandardCharsets.UTF_8);
    return dir;
  }

  public ObjectNode toJson() {
    ObjectNode root = JSON.createObjectNode();
    root.put("runId", runId);
    root.put("dataSource", dataSource);
    root.put("examples", reference.examples());
    root.put("misfires", misfires);
    root.put("retentionBasis", retentionBasis);
    root.put("pick", pick);
    root.put("chosen", chosen);
    root.put("mode", mode);
    root.put("note", note);
    root.put("passing", candidates.stream().filter(e -> e.assessment().passed()).count());
    ObjectNode gateNode = root.putObject("gates");
    for (GateKey key : GateKey.values()) {
      if (gates.containsKey(key)) {
        ObjectNode g = gateNode.putObject(key.id());
        g.put("threshold", gates.get(key));
        g.put("direction", key.direction() == GateKey.Direction.MIN ? "min" : "max");
        g.put("description", key.description());
      }
    }
    ObjectNode ref = metrics(root.putObject("reference"), reference);
    number(ref, "misfireExactMatch", reference.misfireExactMatch());
    if (!Double.isNaN(baselineMisfireExactMatch)) {
      root.putObject("baseline").put("misfireExactMatch", baselineMisfireExactMatch);
    } else {
      root.putNull("baseline");
    }
    ArrayNode list = root.putArray("candidates");
    for (Entry e : candidates) {
      ObjectNode c = metrics(list.addObject(), e.metrics());
      c.put("format", e.format());
      c.put("uri", e.uri());
      c.put("sha256", e.sha256());
      c.put("chosen", e.metrics().name().equals(chosen));
      c.put("passed", e.assessment().passed());
      ObjectNode values = c.putObject("values");
      for (Map.Entry<String, Double> v : e.assessment().values().entrySet()) {
        number(values, v.getKey(), v.getValue());
      }
      ArrayNode results = c.putArray("gates");
      for (GateResult g : e.assessment().gates()) {
        ObjectNode r = results.addObject();
        r.put("gate", g.gate());
        r.put("threshold", g.threshold());
        number(r, "value", g.value());
        r.put("passed", g.passed());
        r.put("reason", g.reason());
      }
    }
    return root;
  }

  private static ObjectNode metrics(ObjectNode node, CandidateMetrics m) {
    node.put("name", m.name());
    number(node, "exactMatch", m.exactMatch());
    number(node, "perplexity", m.perplexity());
    number(node, "agreement", m.agreement());
    number(node, "klDivergence", m.klDivergence());
    Latency l = m.latency();
    number(node, "prefillP50Ms", l.prefillP50Ms());
    number(node, "prefillP99Ms", l.prefillP99Ms());
    number(node, "decodeP50Ms", l.decodeP50Ms());
    number(node, "decodeP99Ms", l.decodeP99Ms());
    number(node, "prefillTokensPerSecond", l.prefillTokensPerSecond());
    number(node, "decodeTokensPerSecond", l.decodeTokensPerSecond());
    node.put("weightBytes", m.weightBytes());
    node.put("parameters", m.parameters());
    number(node, "misfireExactMatch", m.misfireExactMatch());
    node.put("examples", m.examples());
    node.put("answerTokens", m.answerTokens());
    return node;
  }

  /** JSON has no NaN or infinity: those are written as null. */
  private static void number(ObjectNode node, String key, double v) {
    if (Double.isFinite(v)) {
      node.put(key, v);
    } else {
      node.putNull(key);
    }
  }
}
