package io.distillery.evaluator;

import com.fasterxml.jackson.core.JacksonException;
import io.distillery.evaluator.gate.Assessment;
import io.distillery.evaluator.gate.GateKey;
import io.distillery.evaluator.gate.GateResult;
import io.distillery.evaluator.gate.Gates;
import io.distillery.evaluator.gate.Pick;
import io.distillery.evaluator.measure.CandidateMetrics;
import io.distillery.evaluator.measure.Comparison;
import io.distillery.evaluator.measure.EvalData;
import io.distillery.evaluator.measure.Evaluation;
import io.distillery.evaluator.report.EvaluationReport;
import io.distillery.model.CheckpointException;
import io.distillery.model.llama.LlamaModel;
import io.distillery.model.tokenizer.TextTokenizer;
import io.distillery.stage.ArtefactFormats;
import io.distillery.stage.Stage;
import io.distillery.stage.StageContext;
import io.distillery.stage.StageException;
import io.distillery.stage.StagePlugin;
import io.distillery.stage.StageResult;
import io.distillery.model.tasks.TaskExample;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.stream.Collectors;
import java.util.stream.Stream;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The evaluator worker's stage: measures every candidate checkpoint (the checkpoint artefacts of the upstream nodes)
 * against the reference (the run's registered model) on one set of eval prompts, checks the gates, picks one, and
 * writes an {@code eval-report}. Outputs the chosen candidate's artefact unchanged (first) and the report. When no
 * candidate passes, the report is still written (into the job's work directory in the store) and the stage throws
 * {@link StageException#rejected}: the run ends REJECTED with each candidate's failed gates as the reason.
 *
 * <p>Run-level inputs ({@code $run}): a {@code misfires-jsonl} dataset adds exact match on its held-out rows, and a
 * checkpoint (the currently deployed student of a re-distillation run) is the baseline for
 * {@code misfireImprovement}. A misfire gate without the input it needs is a fatal error; with the input but no
 * held-out row carrying an expected answer, the gate is reported as not measured and does not block.
 */
@StagePlugin(name = "evaluator", params = EvaluatorParams.class,
    description = "measure candidates against the reference, check gates, pick one, write an eval report")
public final class EvaluatorStage implements Stage<EvaluatorParams> {

  /** Artefact formats read as model checkpoints (any other directory holding a config.json counts too). */
  public static final Set<String> CHECKPOINT_FORMATS = ArtefactFormats.CHECKPOINTS;
  public static final String MISFIRES_FORMAT = ArtefactFormats.MISFIRES_JSONL;
  public static final String RUN_NODE = "$run";
  public static final String REPORT_DIR = "eval-report";

  private static final Logger LOG = LoggerFactory.getLogger(EvaluatorStage.class);

  /** One model to judge: the node that made it and its artefact. */
  record Candidate(String name, StageContext.Artefact artefact) {}

  @Override
  public StageResult run(StageContext<EvaluatorParams> ctx) throws StageException, InterruptedException {
    EvaluatorParams params = ctx.params();
    Pick pick = params.pickValue();
    Gates gates;
    try {
      gates = Gates.merge(ctx.job() == null ? Map.of() : ctx.job().getGates(), params.gates());
    } catch (IllegalArgumentException e) {
      throw StageException.fatal("evaluator: " + e.getMessage(), e);
    }
    if (ctx.model() == null) {
      throw StageException.fatal("evaluator: the run has no registered model to use as the reference");
    }
    List<Candidate> candidates = candidates(ctx);
    List<TaskExample> misfires = new ArrayList<>();
    boolean hasMisfireInput = false;
    StageContext.Artefact baseline = null;
    for (StageContext.Input input : ctx.inputs()) {
      if (!input.node().equals(RUN_NODE)) {
        continue;
      }
      for (StageContext.Artefact a : input.artefacts()) {
        if (a.ref().getFormat().equals(MISFIRES_FORMAT)) {
          hasMisfireInput = true;
          misfires.addAll(readMisfires(a, params.samples() - misfires.size()));
        } else if (baseline == null && isCheckpoint(a)) {
          baseline = a;
        }
      }
    }
    boolean misfireGate = gates.contains(GateKey.MISFIRE_EXACT_MATCH) || gates.contains(GateKey.MISFIRE_IMPROVEMENT);
    if (!hasMisfireInput && misfireGate) {
      throw StageException.fatal("evaluator: a misfire gate is set but the run has no " + MISFIRES_FORMAT
          + " input to measure it on");
    }
    if (baseline == null && gates.contains(GateKey.MISFIRE_IMPROVEMENT)) {
      throw StageException.fatal("evaluator: gate misfireImprovement needs the deployed student as a run-level "
          + "hf-checkpoint input (the baseline); the run has none");
    }
    TextTokenizer tokenizer = tokenizer(ctx.model());
    try {
      return evaluate(ctx, evaluation(ctx, tokenizer, misfires), candidates, baseline, gates, pick);
    } finally {
      if (tokenizer instanceof AutoCloseable closeable) {
        try {
          closeable.close();
        } catch (Exception e) {
          LOG.warn("stage=evaluator cannot close the tokenizer: {}", e.toString());
        }
      }
    }
  }

  private StageResult evaluate(StageContext<EvaluatorParams> ctx, Prepared prepared, List<Candidate> candidates,
      StageContext.Artefact baseline, Gates gates, Pick pick) throws StageException, InterruptedException {
    Evaluation evaluation = prepared.evaluation();
    String runId = ctx.job() == null ? null : ctx.job().getRunId();
    int steps = candidates.size() + (baseline == null ? 1 : 2);
    int step = 0;
    ctx.progress(1, "evaluating the reference on " + evaluation.examples().size() + " prompts");
    try (LlamaModel reference = load("reference", ctx.model())) {
      CandidateMetrics referenceMetrics = measure("reference", ctx.model(), reference, reference, evaluation);
      ctx.progress(99.0 * ++step / steps, "measured the reference",
          Map.of("exactMatch", referenceMetrics.exactMatch()));
      double baselineMisfire = Double.NaN;
      if (baseline != null) {
        try (LlamaModel model = load("baseline", baseline.path())) {
          requireSameVocab("baseline", model, reference);
          baselineMisfire = evaluation.misfireExactMatch(model);
        }
        ctx.progress(99.0 * ++step / steps, "measured the deployed baseline on the held-out misfires");
      }
      Map<String, String> notMeasured = new LinkedHashMap<>();
      if (evaluation.misfires().isEmpty()) {
        String why = "the misfires dataset has no held-out row with an expected answer";
        notMeasured.put(GateKey.MISFIRE_EXACT_MATCH.id(), why);
        notMeasured.put(GateKey.MISFIRE_IMPROVEMENT.id(), why);
      }
      List<EvaluationReport.Entry> entries = new ArrayList<>();
      List<Assessment> assessments = new ArrayList<>();
      for (Candidate c : candidates) {
        CandidateMetrics m;
        try (LlamaModel model = load("candidate " + c.name(), c.artefact().path())) {
          requireSameVocab("candidate " + c.name(), model, reference);
          m = measure(c.name(), c.artefact().path(), model, reference, evaluation);
        }
        Map<String, Double> values = Comparison.values(m, referenceMetrics, baselineMisfire);
        Assessment a = new Assessment(c.name(), values, gates.check(values, notMeasured));
        assessments.add(a);
        entries.add(new EvaluationReport.Entry(m, c.artefact().ref().getFormat(), c.artefact().ref().getUri(),
            c.artefact().ref().getSha256(), a));
        LOG.info("evaluated stage=evaluator runId={} candidate={} exactMatch={} retention={} perplexity={} "
            + "agreement={} p99Ms={} weightBytes={} passed={}", runId, c.name(), m.exactMatch(),
            values.get(GateKey.RETENTION.id()), m.perplexity(), m.agreement(), m.latency().decodeP99Ms(),
            m.weightBytes(), a.passed());
        ctx.progress(99.0 * ++step / steps, "evaluated " + c.name() + (a.passed() ? ": passed" : ": failed "
            + a.failed().stream().map(GateResult::gate).collect(Collectors.joining(", "))),
            finite(Map.of("retention", values.get(GateKey.RETENTION.id()), "exactMatch", m.exactMatch())));
      }
      Optional<Assessment> chosen = pick.choose(assessments);
      EvaluationReport report = new EvaluationReport(runId, prepared.source(), evaluation.misfires().size(),
          Comparison.retentionBasis(referenceMetrics), pick.id(), gates.thresholds(), referenceMetrics,
          baselineMisfire, entries, chosen.map(Assessment::candidate).orElse(null));
      Path kept = writeReport(report, ctx.workDir().resolve(REPORT_DIR));
      if (chosen.isEmpty()) {
        String reasons = assessments.stream()
            .map(a -> a.candidate() + " failed " + a.failed().stream().map(GateResult::reason)
                .collect(Collectors.joining(", ")))
            .collect(Collectors.joining("; "));
        LOG.info("rejected stage=evaluator runId={} candidates={} report={}", runId, candidates.size(), kept);
        throw StageException.rejected("no candidate passed the gates: " + reasons + " (report: "
            + kept.resolve(EvaluationReport.HTML_FILE).toUri() + ")");
      }
      Candidate winner = candidates.stream().filter(c -> c.name().equals(chosen.get().candidate())).findFirst()
          .orElseThrow();
      Path chosenCopy = ctx.scratch().resolve("chosen").resolve(winner.artefact().path().getFileName());
      Path reportCopy = ctx.scratch().resolve(REPORT_DIR);
      linkTree(winner.artefact().path(), chosenCopy);
      linkTree(kept, reportCopy);
      Map<String, Double> metrics = new LinkedHashMap<>(finite(chosen.get().values()));
      metrics.put("parameters", (double) entries.stream().filter(e -> e.metrics().name().equals(winner.name()))
          .findFirst().orElseThrow().metrics().parameters());
      metrics.put("referenceExactMatch", referenceMetrics.exactMatch());
      metrics.put("referencePerplexity", referenceMetrics.perplexity());
      metrics.put("retentionFromPerplexity",
          Comparison.retentionBasis(referenceMetrics).equals(Comparison.BASIS_PERPLEXITY) ? 1.0 : 0.0);
      metrics.put("candidates", (double) candidates.size());
      metrics.put("passing", (double) assessments.stream().filter(Assessment::passed).count());
      LOG.info("picked stage=evaluator runId={} pick={} chosen={} passing={} candidates={}", runId, pick.id(),
          winner.name(), metrics.get("passing").intValue(), candidates.size());
      ctx.progress(100, "picked " + winner.name() + " (" + pick.id() + ")");
      return StageResult.of(List.of(new StageResult.Output(chosenCopy, winner.artefact().ref().getFormat()),
          new StageResult.Output(reportCopy, EvaluationReport.FORMAT)), metrics);
    } catch (IllegalArgumentException | IllegalStateException e) {
      throw StageException.fatal("evaluator: " + e.getMessage(), e);
    } catch (IOException e) {
      throw StageException.retryable("evaluator: cannot read or write: " + e.getMessage(), e);
    }
  }

  /** The checkpoint artefacts of every upstream node, named by node ({@code node#2} for a node's second one). */
  static List<Candidate> candidates(StageContext<?> ctx) throws StageException {
    List<Candidate> candidates = new ArrayList<>();
    List<String> seen = new ArrayList<>();
    for (StageContext.Input input : ctx.inputs()) {
      if (input.node().equals(RUN_NODE)) {
        continue;
      }
      int n = 0;
      for (StageContext.Artefact a : input.artefacts()) {
        seen.add(input.node() + ":" + a.ref().getFormat());
        if (isCheckpoint(a)) {
          n++;
          candidates.add(new Candidate(n == 1 ? input.node() : input.node() + "#" + n, a));
        }
      }
    }
    if (candidates.isEmpty()) {
      throw StageException.fatal("evaluator: no candidate checkpoint among the upstream outputs " + seen
          + "; run it after nodes that output a checkpoint (" + CHECKPOINT_FORMATS.stream().sorted().toList() + ")");
    }
    return candidates;
  }

  static boolean isCheckpoint(StageContext.Artefact a) {
    return CHECKPOINT_FORMATS.contains(a.ref().getFormat())
        || (Files.isDirectory(a.path()) && Files.isRegularFile(a.path().resolve("config.json")));
  }

  private static List<TaskExample> readMisfires(StageContext.Artefact a, int room) throws StageException {
    try {
      return room <= 0 ? List.of() : EvalData.heldOutMisfires(a.path(), room);
    } catch (IOException e) {
      throw StageException.fatal("evaluator: cannot read the misfires dataset " + a.ref().getUri() + ": "
          + e.getMessage(), e);
    }
  }

  private static TextTokenizer tokenizer(Path reference) throws StageException {
    try {
      return TextTokenizer.load(reference);
    } catch (CheckpointException e) {
      throw StageException.fatal("evaluator: the reference model cannot be tokenized for: " + e.getMessage(), e);
    } catch (IOException | RuntimeException e) {
      throw StageException.fatal("evaluator: cannot read the reference model's tokenizer in " + reference + ": "
          + e.getMessage(), e);
    }
  }

  /** The evaluation and where its prompts came from. */
  record Prepared(Evaluation evaluation, String source) {}

  private static Prepared evaluation(StageContext<EvaluatorParams> ctx, TextTokenizer tokenizer,
      List<TaskExample> misfires) throws StageException {
    EvaluatorParams p = ctx.params();
    Path dataset = p.dataset() == null ? null
        : p.dataset().startsWith("file:") ? Path.of(java.net.URI.create(p.dataset())) : Path.of(p.dataset());
    try {
      EvalData.EvalSet set = EvalData.examples(dataset, ctx.model(), p.samples(), p.seed());
      LOG.info("eval data stage=evaluator source={} examples={} misfires={}", set.source(), set.examples().size(),
          misfires.size());
      return new Prepared(new Evaluation(tokenizer, set.examples(), misfires, p.batch(), p.latencyRuns(),
          p.decodeTokens()), set.source());
    } catch (NoSuchFileException e) {
      throw StageException.fatal("evaluator: eval dataset " + e.getFile() + " does not exist", e);
    } catch (IOException | IllegalArgumentException e) {
      throw StageException.fatal("evaluator: bad eval dataset: " + e.getMessage(), e);
    }
  }

  private static LlamaModel load(String what, Path dir) throws StageException {
    try {
      return Evaluation.load(dir);
    } catch (CheckpointException | JacksonException e) {
      throw StageException.fatal("evaluator: cannot read the " + what + " checkpoint " + dir + ": " + e.getMessage(),
          e);
    } catch (IOException e) {
      throw StageException.retryable("evaluator: cannot read the " + what + " checkpoint " + dir + ": "
          + e.getMessage(), e);
    } catch (RuntimeException e) {
      throw StageException.fatal("evaluator: cannot load the " + what + " checkpoint " + dir + ": " + e, e);
    }
  }

  private static CandidateMetrics measure(String name, Path dir, LlamaModel model, LlamaModel reference,
      Evaluation evaluation) throws IOException, InterruptedException {
    return evaluation.measure(name, dir, model, reference);
  }

  private static void requireSameVocab(String what, LlamaModel model, LlamaModel reference) throws StageException {
    if (model.config().vocabSize() != reference.config().vocabSize()) {
      throw StageException.fatal("evaluator: the " + what + " has vocab_size " + model.config().vocabSize()
          + " but the reference has " + reference.config().vocabSize() + ": they cannot be compared token by token");
    }
  }

  private static Path writeReport(EvaluationReport report, Path dir) throws IOException {
    if (Files.exists(dir)) {
      try (Stream<Path> old = Files.walk(dir)) {
        for (Path p : old.sorted(Comparator.reverseOrder()).toList()) {
          Files.delete(p);
        }
      }
    }
    return report.write(dir);
  }

  /**
   * Hard-links (or copies, across file systems) a file tree. The worker host moves outputs into the store; the chosen
   * candidate is already there, so the host finds the same content hash, keeps the stored copy and drops this one,
   * and the output reference equals the candidate's.
   */
  static void linkTree(Path source, Path target) throws IOException {
    try (Stream<Path> files = Files.walk(source)) {
      for (Path p : files.toList()) {
        Path t = target.resolve(source.relativize(p).toString());
        if (Files.isDirectory(p)) {
          Files.createDirectories(t);
        } else {
          Files.createDirectories(t.getParent());
          try {
            Files.createLink(t, p);
          } catch (IOException | UnsupportedOperationException e) {
            Files.copy(p, t, StandardCopyOption.COPY_ATTRIBUTES);
          }
        }
      }
    }
  }

  private static Map<String, Double> finite(Map<String, Double> values) {
    Map<String, Double> out = new LinkedHashMap<>();
    values.forEach((k, v) -> {
      if (v != null && Double.isFinite(v)) {
        out.put(k, v);
      }
    });
    return out;
  }
}
