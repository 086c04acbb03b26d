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
import io.distillery.model.config.LlamaConfig;
import io.distillery.model.config.LlamaTensorNames;
import io.distillery.model.llama.LlamaModel;
import io.distillery.model.quant.CompressedTensors;
import io.distillery.model.stream.MemoryPlan;
import io.distillery.model.stream.TeacherForcedScorer;
import io.distillery.model.tasks.TaskBatch;
import io.distillery.model.tasks.TaskExample;
import io.distillery.model.tokenizer.TextTokenizer;
import io.distillery.stage.ArtefactFormats;
import io.distillery.stage.FileTrees;
import io.distillery.stage.Stage;
import io.distillery.stage.StageContext;
import io.distillery.stage.StageException;
import io.distillery.stage.StagePlugin;
import io.distillery.stage.StageResult;
import java.io.IOException;
import java.net.URI;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
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
 * The evaluator worker's stage: measures every candidate checkpoint (the checkpoint artefacts of
 * the upstream nodes) against the reference (the run's registered model) on one set of eval
 * prompts, checks the gates, picks one, and writes an {@code eval-report}. Outputs the chosen
 * candidate's artefact unchanged (first) and the report. When no candidate passes, the report is
 * still written (into the job's work directory in the store) and the stage throws {@link
 * StageException#rejected}: the run ends REJECTED with each candidate's failed gates as the reason.
 *
 * <p>Run-level inputs ({@code $run}): a {@code misfires-jsonl} dataset adds exact match on its
 * held-out rows, and a checkpoint (the currently deployed student of a re-distillation run) is the
 * baseline for {@code misfireImprovement}. A misfire gate without the input it needs is a fatal
 * error; with the input but no held-out row carrying an expected answer, the gate is reported as
 * not measured and does not block.
 */
@StagePlugin(
    name = "evaluator",
    params = EvaluatorParams.class,
    description =
        "measure candidates against the reference, check gates, pick one, write an eval report")
public final class EvaluatorStage implements Stage<EvaluatorParams> {

  /**
   * Artefact formats read as model checkpoints (any other directory holding a config.json counts
   * too).
   */
  public static final Set<String> CHECKPOINT_FORMATS = ArtefactFormats.CHECKPOINTS;

  public static final String MISFIRES_FORMAT = ArtefactFormats.MISFIRES_JSONL;
  public static final String RUN_NODE = "$run";
  public static final String REPORT_DIR = "eval-report";

  private static final Logger LOG = LoggerFactory.getLogger(EvaluatorStage.class);

  /** One model to judge: the node that made it and its artefact. */
  record Candidate(String name, StageContext.Artefact artefact) {}

  @Override
  public StageResult run(StageContext<EvaluatorParams> ctx)
      throws StageException, InterruptedException {
    EvaluatorParams params = ctx.params();
    Pick pick = params.pickValue();
    Gates gates;
    try {
      gates = Gates.merge(ctx.job() == null ? Map.of() : ctx.job().getGates(), params.gates());
    } catch (IllegalArgumentException e) {
      throw StageException.fatal("evaluator: " + e.getMessage(), e);
    }
    if (ctx.model() == null) {
      throw StageException.fatal(
          "evaluator: the run has no registered model to use as the reference");
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
    boolean misfireGate =
        gates.contains(GateKey.MISFIRE_EXACT_MATCH) || gates.contains(GateKey.MISFIRE_IMPROVEMENT);
    if (!hasMisfireInput && misfireGate) {
      throw StageException.fatal(
          "evaluator: a misfire gate is set but the run has no "
              + MISFIRES_FORMAT
              + " input to measure it on");
    }
    if (baseline == null && gates.contains(GateKey.MISFIRE_IMPROVEMENT)) {
      throw StageException.fatal(
          "evaluator: gate misfireImprovement needs the deployed student as a run-level "
              + "hf-checkpoint input (the baseline); the run has none");
    }
    TextTokenizer tokenizer = tokenizer(ctx.model());
    try {
      Prepared prepared = evaluation(ctx, tokenizer, misfires);
      List<ModelShape> models = new ArrayList<>();
      models.add(shape("reference", ctx.model()));
      if (baseline != null) {
        models.add(shape("baseline", baseline.path()));
      }
      for (Candidate c : candidates) {
        models.add(shape("candidate " + c.name(), c.artefact().path()));
      }
      Mode mode =
          mode(params.streamed(), gates, models, prepared.evaluation(), ctx.memoryBudgetBytes());
      LOG.info(
          "evaluation mode stage=evaluator mode={} wholeModelGb={} streamedGb={} budgetGb={}",
          mode.streamed() ? EvaluationReport.STREAMED : EvaluationReport.WHOLE_MODEL,
          MemoryPlan.gigabytes(mode.wholeBytes()),
          MemoryPlan.gigabytes(mode.streamedBytes()),
          MemoryPlan.gigabytes(ctx.memoryBudgetBytes()));
      return evaluate(ctx, prepared, candidates, baseline, gates, pick, mode, models);
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

  private StageResult evaluate(
      StageContext<EvaluatorParams> ctx,
      Prepared prepared,
      List<Candidate> candidates,
      StageContext.Artefact baseline,
      Gates gates,
      Pick pick,
      Mode mode,
      List<ModelShape> shapes)
      throws StageException, InterruptedException {
    Evaluation evaluation = prepared.evaluation();
    String runId = ctx.job() == null ? null : ctx.job().getRunId();
    int steps = candidates.size() + (baseline == null ? 1 : 2);
    int step = 0;
    ctx.progress(
        1,
        "evaluating the reference on "
            + evaluation.examples().size()
            + " prompts"
            + (mode.streamed() ? " (streamed one decoder layer at a time)" : ""));
    try (Measurer measurer =
        mode.streamed()
            ? new StreamedMeasurer(ctx, evaluation, shapes, steps)
            : new WholeModelMeasurer(ctx.model(), evaluation)) {
      CandidateMetrics referenceMetrics = measurer.reference();
      ctx.progress(
          99.0 * ++step / steps,
          "measured the reference",
          Map.of("exactMatch", referenceMetrics.exactMatch()));
      double baselineMisfire = Double.NaN;
      if (baseline != null) {
        baselineMisfire = measurer.baselineMisfire(baseline.path());
        ctx.progress(
            99.0 * ++step / steps, "measured the deployed baseline on the held-out misfires");
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
        CandidateMetrics m = measurer.candidate(c);
        Map<String, Double> values = Comparison.values(m, referenceMetrics, baselineMisfire);
        Assessment a = new Assessment(c.name(), values, gates.check(values, notMeasured));
        assessments.add(a);
        entries.add(
            new EvaluationReport.Entry(
                m,
                c.artefact().ref().getFormat(),
                c.artefact().ref().getUri(),
                c.artefact().ref().getSha256(),
                a));
        LOG.info(
            "evaluated stage=evaluator runId={} candidate={} exactMatch={} retention={} perplexity={} "
                + "agreement={} p99Ms={} weightBytes={} passed={}",
            runId,
            c.name(),
            m.exactMatch(),
            values.get(GateKey.RETENTION.id()),
            m.perplexity(),
            m.agreement(),
            m.latency().decodeP99Ms(),
            m.weightBytes(),
            a.passed());
        ctx.progress(
            99.0 * ++step / steps,
            "evaluated "
                + c.name()
                + (a.passed()
                    ? ": passed"
                    : ": failed "
                        + a.failed().stream()
                            .map(GateResult::gate)
                            .collect(Collectors.joining(", "))),
            finite(
                Map.of(
                    "retention",
                    values.get(GateKey.RETENTION.id()),
                    "exactMatch",
                    m.exactMatch())));
      }
      Optional<Assessment> chosen = pick.choose(assessments);
      EvaluationReport report =
          new EvaluationReport(
              runId,
              prepared.source(),
              evaluation.misfires().size(),
              Comparison.retentionBasis(referenceMetrics),
              pick.id(),
              gates.thresholds(),
              referenceMetrics,
              baselineMisfire,
              entries,
              chosen.map(Assessment::candidate).orElse(null),
              mode.streamed() ? EvaluationReport.STREAMED : EvaluationReport.WHOLE_MODEL,
              mode.note());
      Path kept = writeReport(report, ctx.workDir().resolve(REPORT_DIR));
      if (chosen.isEmpty()) {
        String reasons =
            assessments.stream()
                .map(
                    a ->
                        a.candidate()
                            + " failed "
                            + a.failed().stream()
                                .map(GateResult::reason)
                                .collect(Collectors.joining(", ")))
                .collect(Collectors.joining("; "));
        LOG.info(
            "rejected stage=evaluator runId={} candidates={} report={}",
            runId,
            candidates.size(),
            kept);
        throw StageException.rejected(
            "no candidate passed the gates: "
                + reasons
                + " (report: "
                + kept.resolve(EvaluationReport.HTML_FILE).toUri()
                + ")");
      }
      Candidate winner =
          candidates.stream()
              .filter(c -> c.name().equals(chosen.get().candidate()))
              .findFirst()
              .orElseThrow();
      Path chosenCopy =
          ctx.scratch().resolve("chosen").resolve(winner.artefact().path().getFileName());
      Path reportCopy = ctx.scratch().resolve(REPORT_DIR);
      linkTree(winner.artefact().path(), chosenCopy);
      linkTree(kept, reportCopy);
      Map<String, Double> metrics = new LinkedHashMap<>(finite(chosen.get().values()));
      metrics.put(
          "parameters",
          (double)
              entries.stream()
                  .filter(e -> e.metrics().name().equals(winner.name()))
                  .findFirst()
                  .orElseThrow()
                  .metrics()
                  .parameters());
      metrics.put("referenceExactMatch", referenceMetrics.exactMatch());
      metrics.put("referencePerplexity", referenceMetrics.perplexity());
      metrics.put(
          "retentionFromPerplexity",
          Comparison.retentionBasis(referenceMetrics).equals(Comparison.BASIS_PERPLEXITY)
              ? 1.0
              : 0.0);
      metrics.put("candidates", (double) candidates.size());
      metrics.put("passing", (double) assessments.stream().filter(Assessment::passed).count());
      metrics.put("streamed", mode.streamed() ? 1.0 : 0.0);
      LOG.info(
          "picked stage=evaluator runId={} pick={} chosen={} passing={} candidates={}",
          runId,
          pick.id(),
          winner.name(),
          metrics.get("passing").intValue(),
          candidates.size());
      ctx.progress(100, "picked " + winner.name() + " (" + pick.id() + ")");
      return StageResult.of(
          List.of(
              new StageResult.Output(chosenCopy, winner.artefact().ref().getFormat()),
              new StageResult.Output(reportCopy, EvaluationReport.FORMAT)),
          metrics);
    } catch (IllegalArgumentException | IllegalStateException e) {
      throw StageException.fatal("evaluator: " + e.getMessage(), e);
    } catch (CheckpointException e) {
      throw StageException.fatal("evaluator: cannot read a checkpoint: " + e.getMessage(), e);
    } catch (IOException e) {
      throw StageException.retryable("evaluator: cannot read or write: " + e.getMessage(), e);
    }
  }

  /**
   * The checkpoint artefacts of every upstream node, named by node ({@code node#2} for a node's
   * second one).
   */
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
      throw StageException.fatal(
          "evaluator: no candidate checkpoint among the upstream outputs "
              + seen
              + "; run it after nodes that output a checkpoint ("
              + CHECKPOINT_FORMATS.stream().sorted().toList()
              + ")");
    }
    return candidates;
  }

  static boolean isCheckpoint(StageContext.Artefact a) {
    return CHECKPOINT_FORMATS.contains(a.ref().getFormat())
        || (Files.isDirectory(a.path()) && Files.isRegularFile(a.path().resolve("config.json")));
  }

  private static List<TaskExample> readMisfires(StageContext.Artefact a, int room)
      throws StageException {
    try {
      return room <= 0 ? List.of() : EvalData.heldOutMisfires(a.path(), room);
    } catch (IOException e) {
      throw StageException.fatal(
          "evaluator: cannot read the misfires dataset " + a.ref().getUri() + ": " + e.getMessage(),
          e);
    }
  }

  private static TextTokenizer tokenizer(Path reference) throws StageException {
    try {
      return TextTokenizer.load(reference);
    } catch (CheckpointException e) {
      throw StageException.fatal(
          "evaluator: the reference model cannot be tokenized for: " + e.getMessage(), e);
    } catch (IOException | RuntimeException e) {
      throw StageException.fatal(
          "evaluator: cannot read the reference model's tokenizer in "
              + reference
              + ": "
              + e.getMessage(),
          e);
    }
  }

  /** The evaluation and where its prompts came from. */
  record Prepared(Evaluation evaluation, String source) {}

  private static Prepared evaluation(
      StageContext<EvaluatorParams> ctx, TextTokenizer tokenizer, List<TaskExample> misfires)
      throws StageException {
    EvaluatorParams p = ctx.params();
    Path dataset =
        p.dataset() == null
            ? null
            : p.dataset().startsWith("file:")
                ? Path.of(URI.create(p.dataset()))
                : Path.of(p.dataset());
    try {
      EvalData.EvalSet set = EvalData.examples(dataset, ctx.model(), p.samples(), p.seed());
      LOG.info(
          "eval data stage=evaluator source={} examples={} misfires={}",
          set.source(),
          set.examples().size(),
          misfires.size());
      return new Prepared(
          new Evaluation(
              tokenizer, set.examples(), misfires, p.batch(), p.latencyRuns(), p.decodeTokens()),
          set.source());
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
      throw StageException.fatal(
          "evaluator: cannot read the " + what + " checkpoint " + dir + ": " + e.getMessage(), e);
    } catch (IOException e) {
      throw StageException.retryable(
          "evaluator: cannot read the " + what + " checkpoint " + dir + ": " + e.getMessage(), e);
    } catch (RuntimeException e) {
      throw StageException.fatal(
          "evaluator: cannot load the " + what + " checkpoint " + dir + ": " + e, e);
    }
  }

  /**
   * Measures the reference, the baseline's misfires and each candidate, in that order; owns what it
   * loads.
   */
  private interface Measurer extends AutoCloseable {
    CandidateMetrics reference() throws StageException, IOException, InterruptedException;

    double baselineMisfire(Path baseline) throws StageException, IOException, InterruptedException;

    CandidateMetrics candidate(Candidate c)
        throws StageException, IOException, InterruptedException;

    @Override
    void close();
  }

  /**
   * Each model loaded whole in F32: generation for exact match, latency timed, KL against the
   * reference.
   */
  private static final class WholeModelMeasurer implements Measurer {
    private final Path referenceDir;
    private final Evaluation evaluation;
    private final LlamaModel reference;

    WholeModelMeasurer(Path referenceDir, Evaluation evaluation) throws StageException {
      this.referenceDir = referenceDir;
      this.evaluation = evaluation;
      this.reference = load("reference", referenceDir);
    }

    @Override
    public CandidateMetrics reference() throws IOException, InterruptedException {
      return evaluation.measure("reference", referenceDir, reference, reference);
    }

    @Override
    public double baselineMisfire(Path baseline) throws StageException, InterruptedException {
      try (LlamaModel model = load("baseline", baseline)) {
        requireSameVocab("baseline", model.config(), reference.config());
        return evaluation.misfireExactMatch(model);
      }
    }

    @Override
    public CandidateMetrics candidate(Candidate c)
        throws StageException, IOException, InterruptedException {
      try (LlamaModel model = load("candidate " + c.name(), c.artefact().path())) {
        requireSameVocab("candidate " + c.name(), model.config(), reference.config());
        return evaluation.measure(c.name(), c.artefact().path(), model, reference);
      }
    }

    @Override
    public void close() {
      reference.close();
    }
  }

  /**
   * Each model streamed one decoder layer at a time in one teacher-forced pass ({@link
   * TeacherForcedScorer}): exact match (argmax-correct at every answer position and the stop),
   * perplexity, agreement with the reference's argmax, KL from the reference (the candidate's head
   * pass re-reads the reference's head beside its own); no latency.
   */
  private static final class StreamedMeasurer implements Measurer {
    private final StageContext<EvaluatorParams> ctx;
    private final Evaluation evaluation;
    private final Map<Path, LlamaConfig> configs = new LinkedHashMap<>();
    private final int steps;
    private int step;
    private Evaluation.Streamed reference;
    private LlamaConfig referenceConfig;

    StreamedMeasurer(
        StageContext<EvaluatorParams> ctx,
        Evaluation evaluation,
        List<ModelShape> shapes,
        int steps) {
      this.ctx = ctx;
      this.evaluation = evaluation;
      shapes.forEach(m -> configs.put(m.dir(), m.config()));
      this.steps = steps;
    }

    private Evaluation.Streamed stream(String what, Path dir)
        throws IOException, InterruptedException {
      int at = step++;
      return evaluation.scoreStreamed(
          dir,
          configs.get(dir),
          reference,
          (done, total, message) ->
              ctx.progress(
                  Math.max(1, 99.0 * (at + (double) done / total) / steps), what + ": " + message));
    }

    @Override
    public CandidateMetrics reference() throws IOException, InterruptedException {
      referenceConfig = configs.get(ctx.model());
      reference = stream("reference", ctx.model());
      return evaluation.streamedMetrics(
          "reference", ctx.model(), referenceConfig, reference, reference);
    }

    @Override
    public double baselineMisfire(Path baseline)
        throws StageException, IOException, InterruptedException {
      requireSameVocab("baseline", configs.get(baseline), referenceConfig);
      return evaluation
          .streamedMetrics(
              "baseline", baseline, configs.get(baseline), stream("baseline", baseline), reference)
          .misfireExactMatch();
    }

    @Override
    public CandidateMetrics candidate(Candidate c)
        throws StageException, IOException, InterruptedException {
      Path dir = c.artefact().path();
      requireSameVocab("candidate " + c.name(), configs.get(dir), referenceConfig);
      return evaluation.streamedMetrics(
          c.name(), dir, configs.get(dir), stream("candidate " + c.name(), dir), reference);
    }

    @Override
    public void close() {}
  }

  /**
   * A model's config.json and whether it is compressed-tensors (dequantized on a whole-model load).
   */
  record ModelShape(String what, Path dir, LlamaConfig config, boolean compressed) {

    long parameters() {
      return LlamaTensorNames.parameterCount(config);
    }

    /**
     * F32 bytes a whole-model load holds: compressed ones also hold the decompressed arrays while
     * loading.
     */
    long wholeModelBytes() {
      return 4 * parameters() * (compressed ? 2 : 1);
    }
  }

  private static ModelShape shape(String what, Path dir) throws StageException {
    try {
      if (!Files.isRegularFile(dir.resolve(LlamaConfig.FILE_NAME))) {
        throw StageException.fatal(
            "evaluator: the " + what + " checkpoint " + dir + " has no " + LlamaConfig.FILE_NAME);
      }
      return new ModelShape(
          what,
          dir,
          LlamaConfig.read(dir.resolve(LlamaConfig.FILE_NAME)),
          CompressedTensors.isCompressed(dir));
    } catch (CheckpointException | JacksonException | IllegalArgumentException e) {
      throw StageException.fatal(
          "evaluator: cannot read the "
              + what
              + " checkpoint's config in "
              + dir
              + ": "
              + e.getMessage(),
          e);
    } catch (IOException e) {
      throw StageException.retryable(
          "evaluator: cannot read the " + what + " checkpoint " + dir + ": " + e.getMessage(), e);
    }
  }

  /**
   * Whole-model or streamed, with both memory estimates.
   *
   * @param note the report's note on what a streamed evaluation does not measure; null when whole
   */
  record Mode(boolean streamed, long wholeBytes, long streamedBytes, String note) {}

  /** Gates a streamed evaluation cannot check: latency is not measured. */
  static final List<GateKey> NOT_STREAMED =
      List.of(GateKey.P99_MS, GateKey.PREFILL_P99_MS, GateKey.TOKENS_PER_SECOND);

  public static final String NOT_FITTING =
      "latency not measured: the model does not fit in memory (streamed " + "evaluation)";

  /**
   * Estimated peak of the whole-model evaluation: the runtime; the reference and the largest other
   * model held at once in F32 (a compressed one twice while it is dequantized); the teacher-forced
   * pass's [batch, seq, vocab] tensors of both models (logits, log-softmax, one-hot, product: 4
   * each, so 8); and one batch's forward workspace. Streamed: the largest model's {@link
   * TeacherForcedScorer#peakBytes}.
   */
  static Mode mode(
      String streamed, Gates gates, List<ModelShape> models, Evaluation evaluation, long budget)
      throws StageException {
    List<TaskBatch> batches = evaluation.streamedBatches();
    long batchTokens = 0;
    int rows = 0;
    int seq = 0;
    for (TaskBatch b : batches) {
      batchTokens = Math.max(batchTokens, (long) b.size() * b.length());
      rows = Math.max(rows, b.size());
      seq = Math.max(seq, b.length());
    }
    ModelShape reference = models.getFirst();
    long others = 0;
    long workspace = 0;
    long vocab = 0;
    long streamedBytes = 0;
    for (ModelShape m : models) {
      if (m != reference) {
        others = Math.max(others, m.wholeModelBytes());
      }
      vocab = Math.max(vocab, m.config().vocabSize());
      workspace =
          Math.max(
              workspace,
              MemoryPlan.estimate(m.config(), batchTokens, batchTokens, rows, seq, false)
                  .pieces()
                  .getOrDefault("forward_workspace", 0L));
      streamedBytes =
          Math.max(
              streamedBytes,
              TeacherForcedScorer.peakBytes(
                  m.config(), batches, TeacherForcedScorer.DEFAULT_HEAD_ROWS));
    }
    // each model is held twice while it loads: widened to F32 in Java arrays, which the GC frees
    // only when the heap fills, and as DJL's native arrays. Planned once, a Llama-3.2-1B-shaped
    // reference and candidate came to 17.9 GB against a 19 GB budget on `distillery up`, and the
    // kernel killed the process at 20.6 GB RssAnon.
    long wholeBytes =
        MemoryPlan.RUNTIME_BYTES
            + 2 * (reference.wholeModelBytes() + others)
            + 8 * batchTokens * vocab * 4
            + workspace;
    String have = ", this worker has " + MemoryPlan.gigabytes(budget);
    boolean stream =
        switch (streamed) {
          case "true" -> true;
          case "false" -> {
            if (wholeBytes > budget) {
              throw StageException.fatal(
                  "evaluator: the whole-model evaluation (streamed: false) needs "
                      + MemoryPlan.gigabytes(wholeBytes)
                      + have
                      + ": raise DISTILLERY_WORKER_MEMORY, lower batch, or set "
                      + "streamed: auto to stream the models one decoder layer at a time (needs "
                      + MemoryPlan.gigabytes(streamedBytes)
                      + ")");
            }
            yield false;
          }
          default -> wholeBytes > budget;
        };
    if (!stream) {
      return new Mode(false, wholeBytes, streamedBytes, null);
    }
    if (streamedBytes > budget) {
      throw StageException.fatal(
          "evaluator: the streamed evaluation needs "
              + MemoryPlan.gigabytes(streamedBytes)
              + have
              + " (the whole-model one "
              + MemoryPlan.gigabytes(wholeBytes)
              + "): raise DISTILLERY_WORKER_MEMORY "
              + "or lower batch/samples");
    }
    String why =
        streamed.equals("true")
            ? "latency not measured: streamed: true was set (streamed evaluation)"
            : NOT_FITTING;
    List<String> refused = NOT_STREAMED.stream().filter(gates::contains).map(GateKey::id).toList();
    if (!refused.isEmpty()) {
      throw StageException.fatal(
          "evaluator: gate(s) "
              + String.join(", ", refused)
              + " cannot be checked: "
              + why
              + (streamed.equals("true")
                  ? ""
                  : "; the whole-model evaluation needs " + MemoryPlan.gigabytes(wholeBytes) + have)
              + ", and a streamed evaluation does not time the model. Remove those gates"
              + (streamed.equals("true")
                  ? " or set streamed: auto"
                  : " or raise DISTILLERY_WORKER_MEMORY"));
    }
    return new Mode(
        true,
        wholeBytes,
        streamedBytes,
        why
            + "; exact match is teacher-forced: greedy decoding returns "
            + "the answer exactly when the argmax at every answer position and at the stop is the expected token");
  }

  private static void requireSameVocab(String what, LlamaConfig model, LlamaConfig reference)
      throws StageException {
    if (model.vocabSize() != reference.vocabSize()) {
      throw StageException.fatal(
          "evaluator: the "
              + what
              + " has vocab_size "
              + model.vocabSize()
              + " but the reference has "
              + reference.vocabSize()
              + ": they cannot be compared token by token");
    }
  }

  private static Path writeReport(EvaluationReport report, Path dir) throws IOException {
    FileTrees.delete(dir);
    return report.write(dir);
  }

  /**
   * Hard-links (or copies, across file systems) a file tree. The worker host moves outputs into the
   * store; the chosen candidate is already there, so the host finds the same content hash, keeps
   * the stored copy and drops this one, and the output reference equals the candidate's.
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
    values.forEach(
        (k, v) -> {
          if (v != null && Double.isFinite(v)) {
            out.put(k, v);
          }
        });
    return out;
  }
}
