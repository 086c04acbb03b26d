package io.distillery.bench;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.pytorch.jni.JniUtils;
import io.distillery.distiller.DistillerParams;
import io.distillery.distiller.DistillerParams.Student;
import io.distillery.distiller.DistillerStage;
import io.distillery.distiller.student.ChannelImportance;
import io.distillery.distiller.student.StudentInit;
import io.distillery.distiller.teacher.TeacherLogitCache;
import io.distillery.distiller.teacher.TopKLogits;
import io.distillery.distiller.train.DistillTrainer;
import io.distillery.model.calib.CalibrationStats;
import io.distillery.model.calib.StatsAccumulator;
import io.distillery.model.config.LlamaConfig;
import io.distillery.model.config.LlamaTensorNames;
import io.distillery.model.llama.LlamaModel;
import io.distillery.model.tasks.ExactMatch;
import io.distillery.model.tasks.Perplexity;
import io.distillery.model.tasks.TaskExample;
import io.distillery.model.tasks.TaskJsonl;
import io.distillery.model.tasks.TaskKind;
import io.distillery.model.tasks.TaskSettings;
import io.distillery.model.tasks.TaskSuite;
import io.distillery.model.tokenizer.ByteTokenizer;
import io.distillery.model.train.TeacherConfig;
import io.distillery.model.train.TeacherTrainer;
import io.distillery.pruner.structured.StructuredPruner;
import io.distillery.stage.StageParams;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.SplittableRandom;
import java.util.TreeMap;

/**
 * bench/distill: does distillation buy anything over training the same small model on the labels
 * alone? For each student size, one seed, one set of training prompts and the same number of
 * optimizer steps and batches (so the same training tokens): (1) the student initialised from the
 * teacher and trained with the Hinton loss, alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha)
 * * CE(labels) (arXiv 1503.02531, eq. 2 with the T^2 factor of section 2); (2) the same shape from
 * random weights trained with CE on the labels alone (alpha 0, no teacher). Both, and the teacher,
 * are scored on the teacher's held-out {@code test.jsonl}: exact match (also per task) and answer
 * perplexity. Retention = distilled exact match / teacher exact match.
 *
 * <p>Training prompts are drawn as the teacher's were: its task settings ({@code
 * distillery-tasks.json} beside it, e.g. the default teacher's two-digit additions) and, when it
 * learned every task kind, its weighted train mix ({@link TeacherConfig#WEIGHTED_MIX}); {@code
 * --task-settings defaults} and {@code --mix uniform} give the earlier three-digit, equal-mix data
 * for comparison. Every line reports the tokens trained against the tokens the default teacher
 * trained on ({@code tokens_vs_teacher}; the teacher's count is recomputed from {@link
 * TeacherConfig}'s defaults: the same suite and batch draws as {@link TeacherTrainer}).
 *
 * <p>Student shapes: {@code --sizes 0.5,0.25,0.125} runs each fraction of the teacher's parameters
 * in turn ({@link #shapeFor}: all layers, sqrt(fraction) of the heads and hidden width, the MLP as
 * wide as the parameter budget allows), printing one {@code distill_size} line each, and ends with
 * the {@code distill} line of the quarter-size student (the size 0.25, else the largest below it).
 * Without {@code --sizes}: the one shape of {@code --student L,H,HEADS,KV,I}. {@code --init
 * slicing} (default) cuts the student from the teacher by activation importance ({@link
 * StudentInit}, {@code --slicing activations|first}); {@code --init structured} takes the pruner's
 * Minitron-style structured pruning ({@link StructuredPruner}: whole kv groups and MLP channels by
 * their output energy, hidden width kept) to the same parameter budget.
 *
 * <p>The distilled students train from the teacher's top-k logits cached once over the training and
 * validation examples ({@code --topk K}, default 64, as the distiller stage does; {@code --topk 0}:
 * the teacher's full logits on every step instead); the cache is written to {@code --cache-dir}
 * (default {@code java.io.tmpdir/distill-bench-cache}) keyed by teacher content and examples, so
 * every size and every later run on the same teacher and data reads it back. With {@code
 * --compare-live true} (the default without {@code --sizes}) the student is also distilled from the
 * live teacher's full logits and the steps per second of both are compared.
 *
 * <p>Args: {@code --teacher DIR} (required) and optionally {@code --sizes F,F.. | --student
 * L,H,HEADS,KV,I --init slicing|structured --steps N --batch N --lr X --scratch-lr X --T X --alpha
 * X --samples N --eval N --seed N --threads N --slicing activations|first --topk K --compare-live
 * true|false --scratch true|false --task-settings teacher|defaults --mix teacher|uniform
 * --cache-dir DIR --teacher-tokens N}. Defaults: 1500 steps of 32 sequences, lr 1.5e-3 (scratch
 * 3e-3), T 2, alpha 0.7, top-64 cache, 50,000 training prompts, the first 500 test prompts.
 */
public final class DistillBench {

  private DistillBench() {}

  private static final String DEFAULT_STUDENT = "4,128,2,2,304";

  public static void main(String[] args) throws Exception {
    Map<String, String> a = new LinkedHashMap<>();
    for (int i = 0; i + 1 < args.length; i += 2) {
      if (!args[i].startsWith("--")) {
        throw new IllegalArgumentException("expected --name value pairs, got " + args[i]);
      }
      a.put(args[i].substring(2), args[i + 1]);
    }
    if (args.length % 2 != 0 || !a.containsKey("teacher")) {
      throw new IllegalArgumentException(
          "usage: bench/distill --teacher DIR [--sizes F,F,..|--student L,H,HEADS,KV,I] "
              + "[--init slicing|structured] [--steps N] [--batch N] [--lr X] [--scratch-lr X] "
              + "[--T X] [--alpha X] [--samples N] [--eval N] [--seed N] [--threads N] [--topk K]");
    }
    if (a.containsKey("sizes") && a.containsKey("student")) {
      throw new IllegalArgumentException("--sizes and --student exclude each other");
    }
    Path teacherDir = Path.of(a.get("teacher"));
    int steps = Integer.parseInt(a.getOrDefault("steps", "1500"));
    int batch = Integer.parseInt(a.getOrDefault("batch", "32"));
    // 1.5e-3: at 3e-3 the half-size student's loss rose after warmup (1.37 -> 1.64 at step 300)
    // and it ended at exact match 0.870 against 0.954; the quarter-size one 0.936 against 0.970
    double lr = Double.parseDouble(a.getOrDefault("lr", "1.5e-3"));
    double scratchLr = Double.parseDouble(a.getOrDefault("scratch-lr", "3e-3"));
    double temperature = Double.parseDouble(a.getOrDefault("T", "2"));
    double alpha = Double.parseDouble(a.getOrDefault("alpha", "0.7"));
    int samples = Integer.parseInt(a.getOrDefault("samples", "50000"));
    int eval = Integer.parseInt(a.getOrDefault("eval", "500"));
    long seed = Long.parseLong(a.getOrDefault("seed", "7"));
    int threads = Integer.parseInt(a.getOrDefault("threads", "1"));
    int topK = Integer.parseInt(a.getOrDefault("topk", "64"));
    String init = a.getOrDefault("init", "slicing");
    if (!init.equals("slicing") && !init.equals("structured")) {
      throw new IllegalArgumentException("--init must be slicing or structured, got " + init);
    }
    boolean byActivations = !"first".equals(a.getOrDefault("slicing", "activations"));
    boolean withScratch = Boolean.parseBoolean(a.getOrDefault("scratch", "true"));
    List<Double> sizes =
        a.containsKey("sizes")
            ? Arrays.stream(a.get("sizes").split(",")).map(Double::parseDouble).toList()
            : null;
    if (sizes != null) {
      for (double f : sizes) {
        if (!(f > 0 && f < 1)) {
          throw new IllegalArgumentException("--sizes must be fractions in (0, 1), got " + f);
        }
      }
    }
    boolean compareLive =
        Boolean.parseBoolean(a.getOrDefault("compare-live", sizes == null ? "true" : "false"));
    Path cacheDir =
        Path.of(
            a.getOrDefault(
                "cache-dir",
                Path.of(System.getProperty("java.io.tmpdir"), "distill-bench-cache").toString()));
    Engine engine = Engine.getEngine("PyTorch");
    if (threads > 0) {
      JniUtils.setNumThreads(threads);
    }
    long began = System.nanoTime();
    ByteTokenizer tokenizer = ByteTokenizer.instance();
    List<TaskExample> test = TaskJsonl.read(teacherDir.resolve("test.jsonl"));
    test = test.subList(0, Math.min(eval, test.size()));
    Set<String> heldPrompts = new HashSet<>();
    test.forEach(e -> heldPrompts.add(e.prompt()));
    Path validationFile = teacherDir.resolve("validation.jsonl");
    List<TaskExample> validation =
        Files.exists(validationFile)
            ? TaskJsonl.read(validationFile).stream()
                .filter(e -> !heldPrompts.contains(e.prompt()))
                .limit(64)
                .toList()
            : List.of();
    validation.forEach(e -> heldPrompts.add(e.prompt()));
    List<TaskExample> train = trainingExamples(a, teacherDir, test, samples, seed, heldPrompts);
    double[] weights = new double[train.size()];
    Arrays.fill(weights, 1.0);
    int maxNew = maxNewTokens(test);
    long teacherTokens =
        a.containsKey("teacher-tokens")
            ? Long.parseLong(a.get("teacher-tokens"))
            : defaultTeacherTokens();
    System.out.printf(
        Locale.ROOT,
        "engine=%s threads=%d train=%d test=%d steps=%d batch=%d init=%s T=%s alpha=%s "
            + "teacher_tokens=%d%n",
        engine.getVersion(),
        JniUtils.getNumThreads(),
        train.size(),
        test.size(),
        steps,
        batch,
        init,
        temperature,
        alpha,
        teacherTokens);

    try (LlamaModel teacher = LlamaModel.load(teacherDir)) {
      long teacherParams = params(teacher);
      Score teacherScore = score("teacher", teacher, tokenizer, test, maxNew, began);

      String common =
          ",\"steps\":"
              + steps
              + ",\"batch\":"
              + batch
              + ",\"seed\":"
              + seed
              + ",\"evalEvery\":"
              + steps
              + ",\"patience\":1000,\"progressEvery\":"
              + Math.max(1, steps / 10)
              + ",\"seqLen\":128,\"warmup\":"
              + Math.max(1, steps / 20);
      DistillerParams distill =
          StageParams.bind(
              "distiller",
              "{\"lr\":"
                  + lr
                  + ",\"temperature\":"
                  + temperature
                  + ",\"alpha\":"
                  + alpha
                  + common
                  + "}",
              DistillerParams.class);
      DistillerParams scratch =
          StageParams.bind(
              "distiller",
              "{\"lr\":" + scratchLr + ",\"alpha\":0.0" + common + "}",
              DistillerParams.class);
      DistillTrainer trainer = new DistillTrainer(distill);

      TopKLogits cache = null;
      double cacheSeconds = 0;
      if (topK > 0) {
        List<TaskExample> covered = trainer.cachedExamples(train, validation);
        int k = Math.min(topK, teacher.config().vocabSize());
        String fingerprint =
            TeacherLogitCache.fingerprint(
                TeacherLogitCache.teacherHash(teacherDir),
                k,
                teacher.config().vocabSize(),
                covered);
        TeacherLogitCache.Outcome outcome =
            TeacherLogitCache.obtain(
                cacheDir,
                fingerprint,
                fp ->
                    TeacherLogitCache.computeWhole(
                        teacher, covered, k, batch, fp, (done, total, step) -> {}));
        cache = outcome.logits();
        cacheSeconds = outcome.seconds();
        System.out.printf(
            Locale.ROOT,
            "teacher top-%d cache (%s %s): %d positions, %.1f MB, %.1f s%n",
            cache.k(),
            outcome.hit() ? "read from" : "written to",
            outcome.file(),
            cache.positions(),
            cache.bytes() / 1e6,
            cacheSeconds);
      }

      ChannelImportance importance =
          init.equals("slicing") && byActivations
              ? ChannelImportance.measure(teacher, DistillerStage.calibration(train))
              : null;
      CalibrationStats stats =
          init.equals("structured") ? calibrate(teacher, DistillerStage.calibration(train)) : null;
      List<Double> runSizes = sizes != null ? sizes : List.of(Double.NaN);
      List<SizeResult> results = new ArrayList<>();
      for (double size : runSizes) {
        Path initDir = Files.createTempDirectory("distill-bench-student");
        String shape;
        if (init.equals("structured")) {
          double fraction =
              Double.isNaN(size)
                  ? params(StudentInit.studentConfig(teacher.config(), parse(DEFAULT_STUDENT)))
                      / (double) teacherParams
                  : size;
          int[] keep = structuredShape(teacher.config(), fraction);
          LlamaConfig c = teacher.config();
          StructuredPruner.prune(
              teacher,
              stats,
              (c.numKeyValueHeads() - keep[0]) / (double) c.numKeyValueHeads(),
              (c.intermediateSize() - keep[1]) / (double) c.intermediateSize(),
              0,
              initDir,
              null);
          LlamaConfig pc = LlamaConfig.read(initDir);
          shape =
              pc.numHiddenLayers()
                  + ","
                  + pc.hiddenSize()
                  + ","
                  + pc.numAttentionHeads()
                  + ","
                  + pc.numKeyValueHeads()
                  + ","
                  + pc.intermediateSize();
        } else {
          Student s =
              Double.isNaN(size)
                  ? parse(a.getOrDefault("student", DEFAULT_STUDENT))
                  : shapeFor(teacher.config(), size);
          StudentInit.write(teacher, s, initDir, importance);
          shape =
              s.layers()
                  + ","
                  + s.hidden()
                  + ","
                  + s.heads()
                  + ","
                  + s.kvHeads()
                  + ","
                  + s.intermediate();
        }
        SizeResult r =
            runSize(
                size,
                shape,
                initDir,
                teacher,
                teacherParams,
                cache,
                trainer,
                scratch,
                train,
                weights,
                validation,
                withScratch,
                seed,
                tokenizer,
                test,
                maxNew,
                began);
        results.add(r);
        double retention = r.distilled().exactMatch() / teacherScore.exactMatch();
        System.out.printf(
            Locale.ROOT,
            "distill_size size=%s student=%s init=%s student_params=%d params_ratio=%.4f steps=%d "
                + "tokens=%d tokens_vs_teacher=%.3f T=%s alpha=%s distilled_em=%.4f "
                + "scratch_em=%s retention=%.4f margin=%s distill_s=%.0f scratch_s=%.0f%n",
            Double.isNaN(size) ? "-" : size,
            shape,
            init,
            r.params(),
            (double) r.params() / teacherParams,
            r.distillRun().steps(),
            r.distillRun().tokens(),
            (double) r.distillRun().tokens() / teacherTokens,
            temperature,
            alpha,
            r.distilled().exactMatch(),
            r.scratch() == null ? "-" : fmt(r.scratch().exactMatch()),
            retention,
            r.scratch() == null
                ? "-"
                : String.format(
                    Locale.ROOT, "%+.4f", r.distilled().exactMatch() - r.scratch().exactMatch()),
            r.distillSeconds(),
            r.scratchSeconds());
        if (compareLive && cache != null) {
          compareLive(
              initDir,
              teacher,
              distill,
              train,
              weights,
              validation,
              r,
              cacheSeconds,
              tokenizer,
              test,
              maxNew,
              began);
        }
      }
      SizeResult quarter = quarter(results);
      double wall = (System.nanoTime() - began) / 1e9;
      System.out.println();
      System.out.printf(
          Locale.ROOT,
          "%-10s %10s %8s %11s %10s%n",
          "model",
          "params",
          "exact",
          "perplexity",
          "tokens");
      System.out.printf(
          Locale.ROOT,
          "%-10s %10d %8.4f %11.4f %10d%n",
          "teacher",
          teacherParams,
          teacherScore.exactMatch(),
          teacherScore.perplexity(),
          teacherTokens);
      for (SizeResult r : results) {
        String label = Double.isNaN(r.size()) ? "" : "@" + r.size();
        System.out.printf(
            Locale.ROOT,
            "%-10s %10d %8.4f %11.4f %10d%n",
            "distilled" + label,
            r.params(),
            r.distilled().exactMatch(),
            r.distilled().perplexity(),
            r.distillRun().tokens());
        if (r.scratch() != null) {
          System.out.printf(
              Locale.ROOT,
              "%-10s %10d %8.4f %11.4f %10d%n",
              "scratch" + label,
              r.params(),
              r.scratch().exactMatch(),
              r.scratch().perplexity(),
              r.scratchRun().tokens());
        }
      }
      double retention = quarter.distilled().exactMatch() / teacherScore.exactMatch();
      if (quarter.scratch() == null) {
        System.out.printf(
            Locale.ROOT,
            "probe distilled_em=%.4f retention=%.4f (no scratch run) wall=%.0fs%n",
            quarter.distilled().exactMatch(),
            retention,
            wall);
        return;
      }
      System.out.printf(
          Locale.ROOT,
          "student/teacher params=%.3f retention=%.4f distilled-scratch=%+.4f "
              + "wall=%.0fs (lr=%s scratch-lr=%s T=%s alpha=%s)%n",
          (double) quarter.params() / teacherParams,
          retention,
          quarter.distilled().exactMatch() - quarter.scratch().exactMatch(),
          wall,
          lr,
          scratchLr,
          temperature,
          alpha);
      System.out.printf(
          Locale.ROOT,
          "distill teacher_params=%d student_params=%d teacher_em=%.4f distilled_em=%.4f "
              + "scratch_em=%.4f retention=%.4f topk=%d distill_steps_per_s=%.3f "
              + "tokens_vs_teacher=%.3f%n",
          teacherParams,
          quarter.params(),
          teacherScore.exactMatch(),
          quarter.distilled().exactMatch(),
          quarter.scratch().exactMatch(),
          retention,
          cache == null ? 0 : cache.k(),
          quarter.distillRun().steps() / quarter.distillSeconds(),
          (double) quarter.distillRun().tokens() / teacherTokens);
    }
  }

  /**
   * One size's outcome.
   *
   * @param size the fraction asked for (NaN for an explicit {@code --student})
   * @param scratch null when the scratch run was skipped
   */
  private record SizeResult(
      double size,
      long params,
      Score distilled,
      Score scratch,
      DistillTrainer.Result distillRun,
      DistillTrainer.Result scratchRun,
      double distillSeconds,
      double scratchSeconds) {}

  private static SizeResult runSize(
      double size,
      String shape,
      Path initDir,
      LlamaModel teacher,
      long teacherParams,
      TopKLogits cache,
      DistillTrainer trainer,
      DistillerParams scratch,
      List<TaskExample> train,
      double[] weights,
      List<TaskExample> validation,
      boolean withScratch,
      long seed,
      ByteTokenizer tokenizer,
      List<TaskExample> test,
      int maxNew,
      long began)
      throws IOException, InterruptedException {
    String tag = Double.isNaN(size) ? "" : "@" + size;
    long studentParams;
    Score distilled;
    DistillTrainer.Result distillRun;
    double distillSeconds;
    long t0 = System.nanoTime();
    LlamaConfig studentConfig;
    try (LlamaModel student = LlamaModel.load(initDir)) {
      studentConfig = student.config();
      studentParams = params(student);
      System.out.printf(
          Locale.ROOT,
          "student%s %s: %d params (%.4f of the teacher)%n",
          tag,
          shape,
          studentParams,
          (double) studentParams / teacherParams);
      distillRun =
          cache != null
              ? trainer.trainFromCache(
                  cache, student, train, weights, validation, null, g -> progress("distill", g))
              : trainer.train(
                  teacher, student, train, weights, validation, null, g -> progress("distill", g));
      distillSeconds = (System.nanoTime() - t0) / 1e9;
      System.out.printf(
          Locale.ROOT,
          "distill%s (%s) trained %d steps, %d tokens in %.1f s (%.2f steps/s)%n",
          tag,
          cache != null ? "top-" + cache.k() + " cache" : "live teacher",
          distillRun.steps(),
          distillRun.tokens(),
          distillSeconds,
          distillRun.steps() / distillSeconds);
      distilled = score("distilled" + tag, student, tokenizer, test, maxNew, began);
    }
    if (!withScratch) {
      return new SizeResult(
          size, studentParams, distilled, null, distillRun, null, distillSeconds, 0);
    }
    t0 = System.nanoTime();
    try (LlamaModel student = LlamaModel.random(studentConfig, seed)) {
      DistillTrainer.Result scratchRun =
          new DistillTrainer(scratch)
              .train(null, student, train, weights, validation, null, g -> progress("scratch", g));
      double seconds = (System.nanoTime() - t0) / 1e9;
      System.out.printf(
          Locale.ROOT,
          "scratch%s trained %d steps, %d tokens in %.0f s%n",
          tag,
          scratchRun.steps(),
          scratchRun.tokens(),
          seconds);
      Score fromScratch = score("scratch" + tag, student, tokenizer, test, maxNew, began);
      return new SizeResult(
          size,
          studentParams,
          distilled,
          fromScratch,
          distillRun,
          scratchRun,
          distillSeconds,
          seconds);
    }
  }

  /** Distils the same init from the live teacher's full logits and compares steps per second. */
  private static void compareLive(
      Path initDir,
      LlamaModel teacher,
      DistillerParams distill,
      List<TaskExample> train,
      double[] weights,
      List<TaskExample> validation,
      SizeResult cached,
      double cacheSeconds,
      ByteTokenizer tokenizer,
      List<TaskExample> test,
      int maxNew,
      long began)
      throws IOException, InterruptedException {
    long l0 = System.nanoTime();
    try (LlamaModel student = LlamaModel.load(initDir)) {
      DistillTrainer.Result liveRun =
          new DistillTrainer(distill)
              .train(teacher, student, train, weights, validation, null, g -> progress("live", g));
      double seconds = (System.nanoTime() - l0) / 1e9;
      double liveStepsPerSecond = liveRun.steps() / seconds;
      System.out.printf(
          Locale.ROOT,
          "distill (live teacher) trained %d steps, %d tokens in %.1f s (%.2f steps/s)%n",
          liveRun.steps(),
          liveRun.tokens(),
          seconds,
          liveStepsPerSecond);
      Score live = score("distilled-live", student, tokenizer, test, maxNew, began);
      double cachedStepsPerSecond = cached.distillRun().steps() / cached.distillSeconds();
      System.out.printf(
          Locale.ROOT,
          "distill_cache steps=%d steps_per_s_cached=%.3f steps_per_s_live=%.3f "
              + "speedup=%.2f cache_seconds=%.1f cached_em=%.4f live_em=%.4f%n",
          cached.distillRun().steps(),
          cachedStepsPerSecond,
          liveStepsPerSecond,
          cachedStepsPerSecond / liveStepsPerSecond,
          cacheSeconds,
          cached.distilled().exactMatch(),
          live.exactMatch());
    }
  }

  /** The size 0.25 when run, else the largest below it, else the smallest run. */
  private static SizeResult quarter(List<SizeResult> results) {
    SizeResult best = null;
    for (SizeResult r : results) {
      if (Double.isNaN(r.size())) {
        return r;
      }
      if (r.size() <= 0.25 && (best == null || r.size() > best.size())) {
        best = r;
      }
    }
    if (best != null) {
      return best;
    }
    return results.stream().min((x, y) -> Double.compare(x.size(), y.size())).orElseThrow();
  }

  /**
   * The training prompts: the teacher's task kinds (those of its test split), its task settings and
   * (all kinds) its weighted mix, drawn independently ({@link TaskSuite#sample}), none of them a
   * held-out prompt.
   */
  static List<TaskExample> trainingExamples(
      Map<String, String> a,
      Path teacherDir,
      List<TaskExample> test,
      int samples,
      long seed,
      Set<String> held)
      throws IOException {
    String settingsFrom = a.getOrDefault("task-settings", "teacher");
    TaskSettings settings =
        switch (settingsFrom) {
          case "teacher" -> TaskSettings.forModel(teacherDir);
          case "defaults" -> TaskSettings.defaults();
          default ->
              throw new IllegalArgumentException(
                  "--task-settings must be teacher or defaults, got " + settingsFrom);
        };
    Set<TaskKind> seen = new LinkedHashSet<>();
    test.forEach(e -> seen.add(TaskKind.of(e.task())));
    List<TaskKind> kinds =
        Arrays.stream(TaskKind.values()).filter(seen::contains).toList(); // enum order
    String mixFrom = a.getOrDefault("mix", "teacher");
    List<TaskKind> mix =
        switch (mixFrom) {
          case "teacher" ->
              kinds.equals(List.of(TaskKind.values())) ? TeacherConfig.WEIGHTED_MIX : kinds;
          case "uniform" -> kinds;
          default ->
              throw new IllegalArgumentException(
                  "--mix must be teacher or uniform, got " + mixFrom);
        };
    List<TaskExample> train =
        TaskSuite.sample(kinds, mix, settings, samples, 0, 0, seed).train().stream()
            .filter(e -> !held.contains(e.prompt()))
            .toList();
    System.out.printf(
        Locale.ROOT,
        "training prompts: %d, settings %s (%s), mix %s%n",
        train.size(),
        settingsFrom,
        settings,
        mix);
    return train;
  }

  /**
   * The non-pad tokens the default teacher ({@code TeacherConfig.teacher()}) trained on: the same
   * suite and the same batch draws as {@link TeacherTrainer}, each example {@code <s> prompt answer
   * </s>} less its last token, as {@code TaskBatch.realTokens} counts.
   */
  static long defaultTeacherTokens() {
    TeacherConfig config = TeacherConfig.teacher().build();
    List<TaskExample> train = new TeacherTrainer(config, p -> {}).suite().train();
    int[] lengths = new int[train.size()];
    for (int i = 0; i < lengths.length; i++) {
      TaskExample e = train.get(i);
      lengths[i] = ByteTokenizer.instance().encode(e.prompt() + e.answer(), true, true).length - 1;
    }
    SplittableRandom order = new SplittableRandom(config.seed() + 2);
    long tokens = 0;
    for (long draw = 0; draw < (long) config.steps() * config.batch(); draw++) {
      tokens += lengths[order.nextInt(lengths.length)];
    }
    return tokens;
  }

  /**
   * A student of about {@code fraction} of the teacher's parameters and no more: every layer,
   * round(sqrt(fraction) * heads) heads (at least one) at the teacher's head dimension, so the
   * hidden width shrinks with the heads, the kv heads in the teacher's proportion, and the widest
   * MLP that keeps the parameters within {@code fraction} of the teacher's.
   */
  static Student shapeFor(LlamaConfig teacher, double fraction) {
    long budget = (long) Math.floor(fraction * LlamaTensorNames.parameterCount(teacher));
    int heads =
        Math.max(
            1,
            Math.min(
                teacher.numAttentionHeads(),
                (int) Math.round(Math.sqrt(fraction) * teacher.numAttentionHeads())));
    while (true) {
      int hidden = heads * teacher.headDim();
      int kvWanted =
          Math.max(
              1,
              (int)
                  Math.round(
                      heads * teacher.numKeyValueHeads() / (double) teacher.numAttentionHeads()));
      int kv = kvWanted;
      while (heads % kv != 0) {
        kv--;
      }
      int best = 0;
      for (int inter = 1; inter <= teacher.intermediateSize(); inter++) {
        Student s = new Student(teacher.numHiddenLayers(), hidden, heads, kv, inter);
        if (params(StudentInit.studentConfig(teacher, s)) > budget) {
          break;
        }
        best = inter;
      }
      if (best > 0) {
        return new Student(teacher.numHiddenLayers(), hidden, heads, kv, best);
      }
      if (heads == 1) {
        throw new IllegalArgumentException(
            "no student of "
                + fraction
                + " of the teacher's parameters keeps every layer with one head");
      }
      heads--;
    }
  }

  /**
   * The structured pruner's shape for {@code fraction}: kept kv groups {@code max(1, floor(fraction
   * * kvHeads))} and the most MLP channels within the budget (hidden width and layers
   * kept). @return {kvGroups, channels}
   */
  static int[] structuredShape(LlamaConfig teacher, double fraction) {
    long budget = (long) Math.floor(fraction * LlamaTensorNames.parameterCount(teacher));
    int groups = Math.max(1, (int) Math.floor(fraction * teacher.numKeyValueHeads()));
    for (; groups >= 1; groups--) {
      int perGroup = teacher.numAttentionHeads() / teacher.numKeyValueHeads();
      int best = 0;
      for (int inter = 1; inter <= teacher.intermediateSize(); inter++) {
        Student s =
            new Student(
                teacher.numHiddenLayers(), teacher.hiddenSize(), groups * perGroup, groups, inter);
        if (params(StudentInit.studentConfig(teacher, s)) > budget) {
          break;
        }
        best = inter;
      }
      if (best > 0) {
        return new int[] {groups, best};
      }
    }
    throw new IllegalArgumentException(
        "structured pruning keeps the hidden width and every layer: no student of "
            + fraction
            + " of the teacher's parameters has one kv group and one MLP channel");
  }

  /** Per-module input statistics of the teacher on {@code sequences} (no X^T X). */
  private static CalibrationStats calibrate(LlamaModel teacher, List<int[]> sequences) {
    StatsAccumulator accumulator = new StatsAccumulator(16, 1.1f, Set.of(), false);
    try (LlamaModel.ObserverRegistration ignored =
        teacher.observeLinearInputs(
            (module, input) ->
                accumulator.add(module, input.toFloatArray(), (int) input.getShape().get(2)))) {
      for (int[] sequence : sequences) {
        try (NDManager scope = teacher.manager().newSubManager()) {
          teacher.forward(scope, new int[][] {sequence});
        }
      }
    }
    return accumulator.result(Map.of());
  }

  private static Student parse(String shape) {
    int[] s = Arrays.stream(shape.split(",")).mapToInt(Integer::parseInt).toArray();
    if (s.length != 5) {
      throw new IllegalArgumentException("--student takes L,H,HEADS,KV,I, got " + shape);
    }
    return new Student(s[0], s[1], s[2], s[3], s[4]);
  }

  private static String fmt(double v) {
    return String.format(Locale.ROOT, "%.4f", v);
  }

  private record Score(double exactMatch, double perplexity) {}

  private static Score score(
      String name,
      LlamaModel model,
      ByteTokenizer tokenizer,
      List<TaskExample> test,
      int maxNew,
      long began) {
    Map<String, List<TaskExample>> byTask = new TreeMap<>();
    test.forEach(e -> byTask.computeIfAbsent(e.task(), t -> new ArrayList<>()).add(e));
    StringBuilder tasks = new StringBuilder();
    double correct = 0;
    for (Map.Entry<String, List<TaskExample>> e : byTask.entrySet()) {
      double em = ExactMatch.score(model, tokenizer, e.getValue(), maxNew);
      correct += em * e.getValue().size();
      tasks.append(' ').append(e.getKey()).append('=').append(fmt(em));
    }
    double em = correct / test.size();
    double ppl = Perplexity.evaluate(model, tokenizer, test).perplexity();
    System.out.printf(
        Locale.ROOT,
        "%s exact_match=%.4f perplexity=%.4f by task:%s (at %.0f s)%n",
        name,
        em,
        ppl,
        tasks,
        (System.nanoTime() - began) / 1e9);
    return new Score(em, ppl);
  }

  private static void progress(String name, DistillTrainer.Progress g) {
    System.out.printf(
        Locale.ROOT,
        "%s step %d/%d loss=%.4f tok/s=%.0f eta=%.0fs%s%n",
        name,
        g.step(),
        g.total(),
        g.loss(),
        g.tokensPerSecond(),
        g.etaSeconds(),
        Double.isNaN(g.validationLoss())
            ? ""
            : String.format(Locale.ROOT, " val=%.4f", g.validationLoss()));
  }

  private static long params(LlamaModel m) {
    return m.parameters().values().stream().mapToLong(NDArray::size).sum();
  }

  private static long params(LlamaConfig c) {
    return LlamaTensorNames.parameterCount(c);
  }

  private static int maxNewTokens(List<TaskExample> examples) {
    int longest = 0;
    for (TaskExample e : examples) {
      longest = Math.max(longest, ByteTokenizer.instance().encode(e.answer()).length);
    }
    return longest + 2;
  }
}
