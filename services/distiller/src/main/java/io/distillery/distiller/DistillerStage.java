package io.distillery.distiller;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import io.distillery.distiller.data.DataFiles;
import io.distillery.distiller.data.DistillData;
import io.distillery.distiller.student.ChannelImportance;
import io.distillery.distiller.student.StudentInit;
import io.distillery.distiller.teacher.TeacherLogitCache;
import io.distillery.distiller.train.DistillTrainer;
import io.distillery.model.CheckpointException;
import io.distillery.model.MemoryBudget;
import io.distillery.model.config.LlamaConfig;
import io.distillery.model.config.LlamaTensorNames;
import io.distillery.model.llama.LlamaModel;
import io.distillery.model.quant.CompressedTensors;
import io.distillery.model.safetensors.Checkpoint;
import io.distillery.model.safetensors.DType;
import io.distillery.model.stream.MemoryPlan;
import io.distillery.model.stream.TeacherForcedScorer;
import io.distillery.model.tasks.ExactMatch;
import io.distillery.model.tasks.TaskBatch;
import io.distillery.model.tasks.TaskExample;
import io.distillery.model.tasks.TaskJsonl;
import io.distillery.model.tasks.TaskKind;
import io.distillery.model.tasks.TaskSettings;
import io.distillery.model.tokenizer.ByteTokenizer;
import io.distillery.stage.ArtefactFormats;
import io.distillery.stage.Stage;
import io.distillery.stage.StageContext;
import io.distillery.stage.StageException;
import io.distillery.stage.StagePlugin;
import io.distillery.stage.StageResult;
import java.io.IOException;
import java.net.URI;
import java.nio.file.FileSystemNotFoundException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The distiller stage. Data: {@link DistillData} (task-suite prompts, user JSONL, misfires; teacher
 * traces where a prompt has no answer). Student: an "hf-checkpoint"/"hf-llama" input (e.g. the
 * deployed student of a re-distillation run, or an upstream pruner's output), else the {@code
 * studentUri} checkpoint, else the {@code student} shape sliced from the teacher ({@link
 * StudentInit}, tensors read one at a time from the teacher's mapped checkpoint). Teacher: held in
 * memory when it fits the worker's budget with the student's training ({@link TeacherPlan}), else
 * streamed one decoder layer at a time ({@code streamTeacher}); either way it runs once over the
 * training and validation examples and its top-k logits ({@code topK}) are cached in {@code
 * sharedDir()/teacher-logits} ({@link TeacherLogitCache}), keyed by teacher content, examples and
 * k, which a retry or another run of the same teacher and data reads instead ({@code
 * teacher_cache=hit}). Training: {@link DistillTrainer} on the cached top-k, resumable from {@code
 * workDir()/distill}, so a retried job continues from its last checkpoint. Output: an F32 HF
 * checkpoint with the teacher's tokenizer files (the worker host adds the lineage manifest);
 * metrics include both sizes, the losses, and the student's and teacher's exact match on the
 * held-out sample.
 */
@StagePlugin(
    name = "distiller",
    params = DistillerParams.class,
    description = "Hinton knowledge distillation of a Llama teacher into a smaller student")
public final class DistillerStage implements Stage<DistillerParams> {

  public static final String FORMAT = ArtefactFormats.HF_LLAMA;

  /** Formats accepted as a student checkpoint input. */
  public static final List<String> STUDENT_FORMATS = List.of(ArtefactFormats.HF_CHECKPOINT, FORMAT);

  public static final String DATASET_FORMAT = "dataset";
  public static final String MISFIRES_FORMAT = ArtefactFormats.MISFIRES_JSONL;
  private static final List<String> TOKENIZER_FILES =
      List.of(ByteTokenizer.TOKENIZER_FILE, ByteTokenizer.CONFIG_FILE, "special_tokens_map.json");
  private static final Logger LOG = LoggerFactory.getLogger(DistillerStage.class);
  private static final ObjectMapper JSON =
      new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT);

  @Override
  public StageResult run(StageContext<DistillerParams> ctx)
      throws StageException, InterruptedException {
    DistillerParams p = ctx.params();
    if (ctx.model() == null) {
      throw StageException.fatal("the distiller needs a teacher model: the run has none");
    }
    String runId = ctx.job() == null ? "" : ctx.job().getRunId();
    Path out = ctx.scratch().resolve("student");
    Map<String, Double> metrics = new LinkedHashMap<>();
    try {
      LlamaConfig config = LlamaConfig.read(ctx.model());
      LlamaConfig studentConfig = studentConfig(ctx, config);
      TeacherPlan plan = TeacherPlan.of(ctx, config, studentConfig);
      LOG.info(
          "distiller teacher runId={} inMemory={} teacherBytes={} studentTrainingBytes={} budget={}",
          runId,
          plan.inMemory(),
          plan.wholeBytes(),
          plan.trainingBytes(),
          ctx.memoryBudgetBytes());
      try (LlamaModel teacher = plan.inMemory() ? LlamaModel.load(ctx.model()) : null) {
        ctx.progress(0, "preparing data");
        DistillData data = data(ctx, config, teacher, plan);
        if (data.train().isEmpty()) {
          throw StageException.fatal(
              "the dataset is empty: set source: tasks, a dataset param, or give a \"dataset\" or "
                  + "\"misfires-jsonl\" input with usable rows (misfire rows need split=train and an expected answer; "
                  + data.misfiresSkipped()
                  + " were left out)");
        }
        LOG.info(
            "distiller data runId={} train={} heldout={} taskPrompts={} fileRows={} misfireRows={} traces={}",
            runId,
            data.train().size(),
            data.heldout().size(),
            data.taskPrompts(),
            data.fileRows(),
            data.misfireRows(),
            data.traces());
        Path init = studentInit(ctx, teacher, config, data.train(), plan);
        Path checkpoints = ctx.workDir().resolve("distill");
        DistillTrainer trainer = new DistillTrainer(p);
        TeacherLogitCache.Outcome cached =
            p.usesTeacherLogits() ? teacherLogits(ctx, config, teacher, plan, trainer, data) : null;
        try (LlamaModel student = CompressedTensors.loadAny(init)) {
          if (student.config().vocabSize() != config.vocabSize()) {
            throw StageException.fatal(
                "the student checkpoint's vocabulary ("
                    + student.config().vocabSize()
                    + ") differs from the teacher's ("
                    + config.vocabSize()
                    + "): logits cannot be distilled");
          }
          DistillTrainer.Listener listener = progress -> report(ctx, progress);
          DistillTrainer.Result r =
              cached != null
                  ? trainer.trainFromCache(
                      cached.logits(),
                      student,
                      data.train(),
                      data.weights(),
                      data.heldout(),
                      checkpoints,
                      listener)
                  : trainer.train(
                      null,
                      student,
                      data.train(),
                      data.weights(),
                      data.heldout(),
                      checkpoints,
                      listener);
          ctx.progress(99, "scoring the student on " + data.heldout().size() + " held-out prompts");
          student.save(out, DType.F32);
          copyTokenizer(ctx.model(), out);
          long studentParams = count(student);
          long teacherParams = LlamaTensorNames.parameterCount(config);
          metrics.put("studentParams", (double) studentParams);
          metrics.put("teacherParams", (double) teacherParams);
          metrics.put("compression", (double) teacherParams / studentParams);
          metrics.put("trainLoss", r.trainLoss());
          if (!Double.isNaN(r.validationLoss())) {
            metrics.put("valLoss", r.validationLoss());
          }
          metrics.put("steps", (double) r.steps());
          metrics.put("tokens", (double) r.tokens());
          metrics.put("resumedFrom", (double) r.resumedFrom());
          metrics.put("stoppedEarly", r.stoppedEarly() ? 1.0 : 0.0);
          metrics.put("trainExamples", (double) data.train().size());
          metrics.put("misfireRows", (double) data.misfireRows());
          metrics.put("traces", (double) data.traces());
          metrics.put("teacherStreamed", plan.inMemory() ? 0.0 : 1.0);
          if (cached != null) {
            metrics.put("teacherCacheHit", cached.hit() ? 1.0 : 0.0);
            metrics.put("teacherCacheSeconds", cached.seconds());
            metrics.put("teacherTopK", (double) cached.logits().k());
            metrics.put("teacherCachePositions", (double) cached.logits().positions());
          }
          if (!data.heldout().isEmpty()) {
            int maxNew = maxNewTokens(data.heldout());
            double studentEm =
                ExactMatch.score(student, ByteTokenizer.instance(), data.heldout(), maxNew);
            metrics.put("studentExactMatch", studentEm);
            metrics.put("heldoutExamples", (double) data.heldout().size());
            double teacherEm =
                teacherExactMatch(ctx, config, teacher, plan, data.heldout(), maxNew);
            if (!Double.isNaN(teacherEm)) {
              metrics.put("teacherExactMatch", teacherEm);
              if (teacherEm > 0) {
                metrics.put("retention", studentEm / teacherEm);
              }
            } else {
              metrics.put("teacherExactMatchSkipped", 1.0);
            }
          }
          LOG.info("distiller finished runId={} metrics={}", runId, metrics);
        }
      }
    } catch (StageException e) {
      throw e;
    } catch (DataFiles.BadDataException e) {
      throw StageException.fatal("bad distillation data: " + e.getMessage(), e);
    } catch (IllegalArgumentException | IllegalStateException | CheckpointException e) {
      throw StageException.fatal("distiller failed: " + e.getMessage(), e);
    } catch (IOException e) {
      throw StageException.retryable("cannot read or write the model: " + e.getMessage(), e);
    }
    return StageResult.of(List.of(new StageResult.Output(out, FORMAT)), metrics);
  }

  /**
   * Whether the teacher is held in memory, with the estimates behind the choice (bytes): the whole
   * teacher in F32 with one batch's forward, and the student's training (weights, gradients, AdamW
   * moments, one batch's activations and logits).
   */
  record TeacherPlan(boolean inMemory, long wholeBytes, long trainingBytes, long budget) {

    static TeacherPlan of(
        StageContext<DistillerParams> ctx, LlamaConfig teacher, LlamaConfig student)
        throws StageException {
      DistillerParams p = ctx.params();
      long tokens = (long) p.batch() * p.seqLen();
      long forward =
          MemoryPlan.estimate(teacher, tokens, tokens, p.batch(), p.seqLen(), false)
              .pieces()
              .get("forward_workspace");
      long whole =
          MemoryBudget.denseF32Bytes(teacher) + forward + 2 * tokens * teacher.vocabSize() * 4;
      long training = trainingBytes(student, p);
      long budget = ctx.memoryBudgetBytes();
      boolean fits = MemoryPlan.RUNTIME_BYTES + whole + training <= budget;
      boolean inMemory = p.streamTeacher() == null ? fits : !p.streamTeacher();
      if (inMemory && !fits) {
        MemoryBudget.require(
            MemoryPlan.RUNTIME_BYTES + whole + training,
            budget,
            "distilling with the teacher in memory (streamTeacher: false; F32 teacher "
                + MemoryBudget.format(whole)
                + ", student training "
                + MemoryBudget.format(training)
                + ")");
      }
      if (MemoryPlan.RUNTIME_BYTES + training > budget) {
        MemoryBudget.require(
            MemoryPlan.RUNTIME_BYTES + training,
            budget,
            "training the student (weights, gradients, AdamW moments and one batch of "
                + p.batch()
                + " x "
                + p.seqLen()
                + " tokens)");
      }
      return new TeacherPlan(inMemory, whole, training, budget);
    }

    /**
     * The student's training peak: weights, gradients and two AdamW moments in F32; per layer the
     * activations autograd keeps for one batch; the logits with their log-softmax and gradients.
     */
    static long trainingBytes(LlamaConfig student, DistillerParams p) {
      long tokens = (long) p.batch() * p.seqLen();
      long row = Math.min(4L * p.seqLen(), student.maxPositionEmbeddings());
      long perLayer =
          tokens * (12L * student.hiddenSize() + 5L * student.intermediateSize()) * 4
              + 3 * tokens * row * student.numAttentionHeads() * 4;
      return 4 * MemoryBudget.denseF32Bytes(student)
          + student.numHiddenLayers() * perLayer
          + 6 * tokens * student.vocabSize() * 4;
    }
  }

  /**
   * The teacher's top-k over the training and validation examples, read from the job's work
   * directory when a run with the same teacher, examples and k computed it, else computed (in
   * memory or streamed, as planned) and written there.
   */
  private static TeacherLogitCache.Outcome teacherLogits(
      StageContext<DistillerParams> ctx,
      LlamaConfig config,
      LlamaModel teacher,
      TeacherPlan plan,
      DistillTrainer trainer,
      DistillData data)
      throws IOException, InterruptedException, StageException {
    DistillerParams p = ctx.params();
    List<TaskExample> examples = trainer.cachedExamples(data.train(), data.heldout());
    int k = Math.min(p.topK(), config.vocabSize());
    ctx.progress(0, "hashing the teacher");
    String fingerprint =
        TeacherLogitCache.fingerprint(
            TeacherLogitCache.teacherHash(ctx.model()), k, config.vocabSize(), examples);
    long positions = TeacherLogitCache.offsets(examples)[examples.size()];
    long cacheBytes = 8L * positions * k + 8L * positions;
    MemoryBudget.require(
        MemoryPlan.RUNTIME_BYTES
            + (plan.inMemory() ? plan.wholeBytes() : 0)
            + plan.trainingBytes()
            + cacheBytes,
        plan.budget(),
        "training from the teacher's cached top-"
            + k
            + " logits ("
            + MemoryBudget.format(cacheBytes)
            + " for "
            + positions
            + " positions)");
    int perPass = plan.inMemory() ? examples.size() : examplesPerPass(ctx, config, examples, k);
    long started = System.nanoTime();
    TeacherLogitCache.Outcome outcome =
        TeacherLogitCache.obtain(
            ctx.sharedDir().resolve(TeacherLogitCache.DIR),
            fingerprint,
            fp -> {
              if (plan.inMemory()) {
                return TeacherLogitCache.computeWhole(
                    teacher,
                    examples,
                    k,
                    p.batch(),
                    fp,
                    (done, total, step) -> passProgress(ctx, started, done, total, step));
              }
              return TeacherLogitCache.computeStreamed(
                  ctx.model(),
                  config,
                  examples,
                  k,
                  p.batch(),
                  TeacherForcedScorer.DEFAULT_HEAD_ROWS,
                  perPass,
                  fp,
                  (done, total, step) -> passProgress(ctx, started, done, total, step));
            });
    ctx.progress(
        1,
        "teacher_cache="
            + (outcome.hit() ? "hit" : "miss")
            + " top-"
            + k
            + " logits of "
            + positions
            + " positions",
        Map.of(
            "teacherCacheHit",
            outcome.hit() ? 1.0 : 0.0,
            "teacherCachePositions",
            (double) positions));
    return outcome;
  }

  /**
   * The most examples one streamed pass may take so that its planned peak fits the budget (halved
   * until it does); refused when a single batch does not fit.
   */
  private static int examplesPerPass(
      StageContext<DistillerParams> ctx, LlamaConfig config, List<TaskExample> examples, int k)
      throws StageException {
    DistillerParams p = ctx.params();
    int perPass = examples.size();
    while (true) {
      long peak = 0;
      for (int from = 0; from < examples.size(); from += perPass) {
        peak =
            Math.max(
                peak,
                TeacherLogitCache.streamedPeakBytes(
                    config,
                    examples.subList(from, Math.min(examples.size(), from + perPass)),
                    k,
                    p.batch(),
                    TeacherForcedScorer.DEFAULT_HEAD_ROWS));
      }
      if (peak <= ctx.memoryBudgetBytes()) {
        LOG.info(
            "distiller streamed teacher pass examplesPerPass={} plannedPeak={} budget={}",
            perPass,
            peak,
            ctx.memoryBudgetBytes());
        return perPass;
      }
      if (perPass <= p.batch()) {
        MemoryBudget.require(
            peak,
            ctx.memoryBudgetBytes(),
            "streaming the teacher over " + perPass + " examples (one decoder layer at a time)");
      }
      perPass = Math.max(p.batch(), perPass / 2);
    }
  }

  private static void passProgress(
      StageContext<DistillerParams> ctx, long started, int done, int total, String step) {
    double elapsed = (System.nanoTime() - started) / 1e9;
    String eta =
        done > 0 ? String.format(Locale.ROOT, ", eta %.0fs", elapsed / done * (total - done)) : "";
    ctx.progress(
        total == 0 ? 0 : (double) done / total,
        String.format(Locale.ROOT, "teacher pass %s (%d/%d%s)", step, done, total, eta),
        Map.of("teacherPassDone", (double) done, "teacherPassTotal", (double) total));
  }

  /**
   * The teacher's exact match on the held-out examples: by greedy decoding when it is in memory;
   * else teacher-forced in one streamed pass (the same verdict: greedy decoding returns the answer
   * exactly when every answer position's argmax is the answer's token), or NaN (skipped, logged)
   * when that pass does not fit the budget.
   */
  private static double teacherExactMatch(
      StageContext<DistillerParams> ctx,
      LlamaConfig config,
      LlamaModel teacher,
      TeacherPlan plan,
      List<TaskExample> heldout,
      int maxNew)
      throws IOException, InterruptedException {
    if (teacher != null) {
      return ExactMatch.score(teacher, ByteTokenizer.instance(), heldout, maxNew);
    }
    List<TaskBatch> batches = new ArrayList<>();
    for (int from = 0; from < heldout.size(); from += ctx.params().batch()) {
      batches.add(
          TaskBatch.of(
              heldout.subList(from, Math.min(heldout.size(), from + ctx.params().batch())),
              ByteTokenizer.instance()));
    }
    long need =
        TeacherForcedScorer.peakBytes(config, batches, TeacherForcedScorer.DEFAULT_HEAD_ROWS)
            + plan.trainingBytes();
    String refusal = MemoryBudget.refusal(need, plan.budget());
    if (refusal != null) {
      LOG.warn("distiller teacher exact match skipped: the streamed pass {}", refusal);
      return Double.NaN;
    }
    TeacherForcedScorer.Result result =
        new TeacherForcedScorer(ctx.model(), config, TeacherForcedScorer.DEFAULT_HEAD_ROWS)
            .score(batches, (done, total, step) -> {});
    int exact = 0;
    for (boolean e : result.exact()) {
      exact += e ? 1 : 0;
    }
    return (double) exact / heldout.size();
  }

  private static DistillData data(
      StageContext<DistillerParams> ctx, LlamaConfig config, LlamaModel teacher, TeacherPlan plan)
      throws IOException, DataFiles.BadDataException, StageException {
    DistillerParams p = ctx.params();
    List<Path> prompts = new ArrayList<>();
    if (p.dataset() != null) {
      Path file = localPath(p.dataset(), "dataset");
      if (!Files.isRegularFile(file)) {
        throw StageException.fatal("dataset " + p.dataset() + " is not a readable file");
      }
      prompts.add(file);
    }
    for (StageContext.Artefact a : ctx.artefacts(DATASET_FORMAT)) {
      prompts.addAll(DataFiles.jsonlFiles(a.path()));
    }
    List<Path> misfires =
        ctx.artefacts(MISFIRES_FORMAT).stream().map(StageContext.Artefact::path).toList();
    TaskSettings settings;
    try {
      settings = TaskSettings.forModel(ctx.model());
    } catch (IOException e) {
      throw StageException.fatal("cannot draw task prompts for the teacher: " + e.getMessage(), e);
    }
    DistillData.Tracer tracer =
        teacher != null
            ? teacher::generate
            : (prompt, maxNew, sampling, stop) -> {
              throw new IllegalArgumentException(
                  "a prompt without an answer (or labels: false) is continued by the teacher, "
                      + "which needs the whole teacher in memory, but it is streamed (F32 teacher "
                      + MemoryBudget.format(plan.wholeBytes())
                      + ", budget "
                      + MemoryBudget.format(plan.budget())
                      + "): give answers, or raise DISTILLERY_WORKER_MEMORY");
            };
    return DistillData.build(
        p,
        config,
        tracer,
        taskKinds(ctx),
        settings,
        heldOutPrompts(ctx.model()),
        prompts,
        misfires);
  }

  /**
   * The prompts of the teacher's held-out splits ({@code test.jsonl}, {@code validation.jsonl}
   * beside its checkpoint, where present): generated task prompts never include them, since the
   * evaluator scores the student on the teacher's test split (drawn from the same generator, 253 of
   * its 1,000 prompts were among 40,000 generated training prompts).
   */
  static Set<String> heldOutPrompts(Path teacher) throws IOException {
    Set<String> prompts = new HashSet<>();
    for (String split : List.of("test.jsonl", "validation.jsonl")) {
      Path file = teacher.resolve(split);
      if (Files.isRegularFile(file)) {
        TaskJsonl.read(file).forEach(e -> prompts.add(e.prompt()));
      }
    }
    return prompts;
  }

  /** The {@code tasks} param, else the kinds of the teacher's held-out split, else every kind. */
  static List<TaskKind> taskKinds(StageContext<DistillerParams> ctx) throws IOException {
    if (ctx.params().tasks() != null) {
      return ctx.params().tasks().stream().map(TaskKind::of).toList();
    }
    Path test = ctx.model().resolve("test.jsonl");
    if (Files.isRegularFile(test)) {
      List<TaskKind> kinds =
          TaskJsonl.read(test).stream()
              .map(e -> TaskKind.of(e.task()))
              .distinct()
              .sorted()
              .toList();
      if (!kinds.isEmpty()) {
        return kinds;
      }
    }
    return List.of(TaskKind.values());
  }

  /**
   * The student's config before any work: a given checkpoint's config.json, else the {@code
   * student} shape applied to the teacher's.
   */
  private static LlamaConfig studentConfig(StageContext<DistillerParams> ctx, LlamaConfig teacher)
      throws IOException, StageException {
    Path given = givenStudent(ctx);
    if (given != null) {
      return LlamaConfig.read(given);
    }
    if (ctx.params().student() == null) {
      throw StageException.fatal(
          "no student: give the student param (layers, hidden, heads, kvHeads, intermediate), "
              + "studentUri, or an hf-checkpoint input");
    }
    return StudentInit.studentConfig(teacher, ctx.params().student());
  }

  /** A student checkpoint given as an input or by {@code studentUri}; null for a shape. */
  private static Path givenStudent(StageContext<DistillerParams> ctx) throws StageException {
    DistillerParams p = ctx.params();
    List<StageContext.Artefact> given = new ArrayList<>();
    for (String format : STUDENT_FORMATS) {
      given.addAll(ctx.artefacts(format));
    }
    if (given.size() > 1) {
      throw StageException.fatal(
          "several student checkpoints are inputs ("
              + given.stream().map(a -> a.ref().getUri()).toList()
              + "): give the distiller one");
    }
    if (!given.isEmpty()) {
      return given.getFirst().path();
    }
    if (p.studentUri() != null) {
      Path dir = localPath(p.studentUri(), "studentUri");
      if (!Files.isRegularFile(dir.resolve("config.json"))) {
        throw StageException.fatal(
            "studentUri " + p.studentUri() + " is not an HF checkpoint directory (no config.json)");
      }
      return dir;
    }
    return null;
  }

  /**
   * The directory the student starts from; a shape is sliced once into the work directory, its
   * tensors read one at a time from the teacher's mapped checkpoint.
   */
  private static Path studentInit(
      StageContext<DistillerParams> ctx,
      LlamaModel teacher,
      LlamaConfig config,
      List<TaskExample> train,
      TeacherPlan plan)
      throws IOException, StageException {
    DistillerParams p = ctx.params();
    Path given = givenStudent(ctx);
    if (given != null) {
      if (p.student() != null) {
        LOG.info(
            "distiller student shape ignored: a student checkpoint is an input path={}", given);
      }
      return given;
    }
    p.student().requireFits(config);
    Path init = ctx.workDir().resolve("student-init");
    if (!Files.exists(init.resolve("config.json"))) {
      boolean byActivations = !"first".equals(p.slicing());
      if (byActivations && teacher == null) {
        throw StageException.fatal(
            "slicing: activations measures the teacher's activations with the whole teacher in "
                + "memory, but it is streamed (F32 teacher "
                + MemoryBudget.format(plan.wholeBytes())
                + ", budget "
                + MemoryBudget.format(plan.budget())
                + "): use slicing: first, or give a student checkpoint");
      }
      Path tmp = ctx.workDir().resolve("student-init.tmp");
      ChannelImportance importance =
          byActivations ? ChannelImportance.measure(teacher, calibration(train)) : null;
      try (Checkpoint checkpoint = Checkpoint.open(ctx.model())) {
        StudentInit.write(checkpoint, config, p.student(), tmp, importance);
      }
      Files.move(tmp, init, StandardCopyOption.ATOMIC_MOVE);
    }
    return init;
  }

  /**
   * The first training sequences ({@code <s> prompt target </s>}) as calibration for the activation
   * importance.
   */
  public static List<int[]> calibration(List<TaskExample> train) {
    List<int[]> out = new ArrayList<>();
    ByteTokenizer tokenizer = ByteTokenizer.instance();
    for (TaskExample e :
        train.subList(0, Math.min(train.size(), DistillerParams.CALIBRATION_SEQUENCES))) {
      out.add(tokenizer.encode(e.prompt() + e.answer(), true, true));
    }
    return out;
  }

  private static Path localPath(String uri, String param) throws StageException {
    try {
      return uri.startsWith("file:") ? Path.of(URI.create(uri)) : Path.of(uri);
    } catch (IllegalArgumentException | FileSystemNotFoundException e) {
      throw StageException.fatal(param + " " + uri + " is not a local path or file: URI", e);
    }
  }

  private static void report(StageContext<DistillerParams> ctx, DistillTrainer.Progress g) {
    Map<String, Double> m = new LinkedHashMap<>();
    m.put("step", (double) g.step());
    m.put("tokens", (double) g.tokens());
    String message;
    if (g.resumed()) {
      m.put("resumedFrom", (double) g.step());
      message = String.format(Locale.ROOT, "resumed from step %d/%d", g.step(), g.total());
    } else {
      m.put("loss", g.loss());
      m.put("tokensPerSecond", g.tokensPerSecond());
      m.put("etaSeconds", g.etaSeconds());
      m.put("lr", g.learningRate());
      message =
          String.format(
              Locale.ROOT,
              "step %d/%d loss=%.4f tok/s=%.0f eta=%.0fs",
              g.step(),
              g.total(),
              g.loss(),
              g.tokensPerSecond(),
              g.etaSeconds());
      if (!Double.isNaN(g.validationLoss())) {
        m.put("valLoss", g.validationLoss());
        message += String.format(Locale.ROOT, " val=%.4f", g.validationLoss());
      }
    }
    ctx.progress(Math.min(98.0, 2 + 96.0 * g.step() / g.total()), message, m);
  }

  private static void copyTokenizer(Path teacher, Path out) throws IOException {
    boolean any = false;
    for (String name : TOKENIZER_FILES) {
      if (Files.exists(teacher.resolve(name))) {
        Files.copy(teacher.resolve(name), out.resolve(name), StandardCopyOption.REPLACE_EXISTING);
        any = true;
      }
    }
    if (!any) {
      ByteTokenizer.instance()
          .save(out); // the model core's tokenizer is the one the teacher was read with
    }
  }

  /** Room for the longest answer plus {@code </s>} and one spare token. */
  private static int maxNewTokens(List<TaskExample> examples) {
    int longest = 0;
    for (TaskExample e : examples) {
      longest = Math.max(longest, ByteTokenizer.instance().encode(e.answer()).length);
    }
    return longest + 2;
  }

  static long count(LlamaModel m) {
    long n = 0;
    for (var a : m.parameters().values()) {
      n += a.size();
    }
    return n;
  }
}
