package io.distillery.bench;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.pytorch.jni.JniUtils;
import io.distillery.distiller.DistillerParams;
import io.distillery.distiller.DistillerParams.Student;
import io.distillery.distiller.DistillerStage;
import io.distillery.distiller.student.ChannelImportance;
import io.distillery.distiller.student.StudentInit;
import io.distillery.distiller.teacher.TeacherLogitCache;
import io.distillery.distiller.teacher.TopKLogits;
import io.distillery.distiller.train.DistillTrainer;
import io.distillery.model.llama.LlamaModel;
import io.distillery.model.tasks.ExactMatch;
import io.distillery.model.tasks.Perplexity;
import io.distillery.model.tasks.TaskExample;
import io.distillery.model.tasks.TaskJsonl;
import io.distillery.model.tasks.TaskKind;
import io.distillery.model.tasks.TaskSettings;
import io.distillery.model.tasks.TaskSuite;
import io.distillery.model.tokenizer.ByteTokenizer;
import io.distillery.stage.StageParams;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;

/**
 * bench/distill: does distillation buy anything over training the same small model on the labels
 * alone? One student shape, one seed, one set of task-suite training prompts and the same number of
 * optimizer steps and batches (so the same training tokens): (1) the student initialised from the
 * teacher (layer selection + width slicing) and trained with the Hinton loss, alpha * T^2 *
 * KL(teacher_T || student_T) + (1 - alpha) * CE(labels) (arXiv 1503.02531, eq. 2 with the T^2
 * factor of section 2); (2) the student from random weights trained with CE on the labels alone
 * (alpha 0, no teacher). Both, and the teacher, are scored on the teacher's held-out {@code
 * test.jsonl}: exact match and answer perplexity. Retention = distilled exact match / teacher exact
 * match.
 *
 * <p>Defaults are the tuned ones for the 4-layer, hidden-256 teacher of {@code distillery teacher}:
 * a student that keeps all four layers at hidden 128, 2 heads and 304 MLP channels (~0.24 of the
 * teacher's parameters; dropping layers instead cost far more exact match), sliced by activation
 * importance, 1500 steps of 32 sequences, lr 3e-3, T 2, alpha 0.7.
 *
 * <p>The distilled student trains from the teacher's top-k logits cached once over the training and
 * validation examples ({@code --topk K}, default 64, as the distiller stage does; {@code --topk 0}:
 * the teacher's full logits on every step instead). With {@code --compare-live true} (default) the
 * same student is also distilled from the live teacher's full logits for the same steps, and the
 * steps per second of both (training only; the cache pass is timed apart) are compared.
 *
 * <p>Args: {@code --teacher DIR} (required; a checkpoint written by {@code distillery teacher}) and
 * optionally {@code --student L,H,HEADS,KV,I --steps N --batch N --lr X --scratch-lr X --T X
 * --alpha X --samples N --eval N --seed N --threads N --slicing activations|first --topk K
 * --compare-live true|false}; {@code --scratch false} skips the baseline (for tuning probes).
 */
public final class DistillBench {

  private DistillBench() {}

  public static void main(String[] args) throws Exception {
    Map<String, String> a = new LinkedHashMap<>();
    for (int i = 0; i + 1 < args.length; i += 2) {
      if (!args[i].startsWith("--")) {
        throw new IllegalArgumentException("expected --name value pairs, got " + args[i]);
      }
      a.put(args[i].substring(2), args[i + 1]);
    }
    if (!a.containsKey("teacher")) {
      throw new IllegalArgumentException(
          "usage: bench/distill --teacher DIR [--student L,H,HEADS,KV,I] [--steps N] "
              + "[--batch N] [--lr X] [--scratch-lr X] [--T X] [--alpha X] [--samples N] [--eval N] [--seed N] "
              + "[--threads N]");
    }
    Path teacherDir = Path.of(a.get("teacher"));
    int[] s =
        Arrays.stream(a.getOrDefault("student", "4,128,2,2,304").split(","))
            .mapToInt(Integer::parseInt)
            .toArray();
    Student shape = new Student(s[0], s[1], s[2], s[3], s[4]);
    int steps = Integer.parseInt(a.getOrDefault("steps", "1500"));
    int batch = Integer.parseInt(a.getOrDefault("batch", "32"));
    double lr = Double.parseDouble(a.getOrDefault("lr", "3e-3"));
    double scratchLr = Double.parseDouble(a.getOrDefault("scratch-lr", "3e-3"));
    double temperature = Double.parseDouble(a.getOrDefault("T", "2"));
    double alpha = Double.parseDouble(a.getOrDefault("alpha", "0.7"));
    int samples = Integer.parseInt(a.getOrDefault("samples", "50000"));
    int eval = Integer.parseInt(a.getOrDefault("eval", "500"));
    long seed = Long.parseLong(a.getOrDefault("seed", "7"));
    int threads = Integer.parseInt(a.getOrDefault("threads", "1"));
    int topK = Integer.parseInt(a.getOrDefault("topk", "64"));
    boolean compareLive = Boolean.parseBoolean(a.getOrDefault("compare-live", "true"));
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
    List<TaskExample> train =
        TaskSuite.generate(List.of(TaskKind.values()), TaskSettings.defaults(), samples, 0, 0, seed)
            .train()
            .stream()
            .filter(e -> !heldPrompts.contains(e.prompt()))
            .toList();
    double[] weights = new double[train.size()];
    Arrays.fill(weights, 1.0);
    int maxNew = maxNewTokens(test);
    System.out.printf(
        Locale.ROOT,
        "engine=%s threads=%d train=%d test=%d student=%s steps=%d batch=%d%n",
        engine.getVersion(),
        JniUtils.getNumThreads(),
        train.size(),
        test.size(),
        a.getOrDefault("student", "4,128,2,2,304"),
        steps,
        batch);

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

      Path init = Files.createTempDirectory("distill-bench-student");
      boolean byActivations = !"first".equals(a.getOrDefault("slicing", "activations"));
      StudentInit.write(
          teacher,
          shape,
          init,
          byActivations
              ? ChannelImportance.measure(teacher, DistillerStage.calibration(train))
              : null);
      Score distilled;
      long studentParams;
      DistillTrainer.Result distillRun;
      DistillTrainer trainer = new DistillTrainer(distill);
      TopKLogits cache = null;
      double cacheSeconds = 0;
      if (topK > 0) {
        long c0 = System.nanoTime();
        cache =
            TeacherLogitCache.computeWhole(
                teacher,
                trainer.cachedExamples(train, validation),
                Math.min(topK, teacher.config().vocabSize()),
                batch,
                "bench",
                (done, total, step) -> {});
        cacheSeconds = (System.nanoTime() - c0) / 1e9;
        System.out.printf(
            Locale.ROOT,
            "teacher top-%d cache: %d positions, %.1f MB, %.1f s%n",
            cache.k(),
            cache.positions(),
            cache.bytes() / 1e6,
            cacheSeconds);
      }
      double distillSeconds;
      long t0 = System.nanoTime();
      try (LlamaModel student = LlamaModel.load(init)) {
        studentParams = params(student);
        distillRun =
            cache != null
                ? trainer.trainFromCache(
                    cache, student, train, weights, validation, null, g -> progress("distill", g))
                : trainer.train(
                    teacher,
                    student,
                    train,
                    weights,
                    validation,
                    null,
                    g -> progress("distill", g));
        distillSeconds = (System.nanoTime() - t0) / 1e9;
        System.out.printf(
            Locale.ROOT,
            "distill (%s) trained %d steps, %d tokens in %.1f s (%.2f steps/s)%n",
            cache != null ? "top-" + cache.k() + " cache" : "live teacher",
            distillRun.steps(),
            distillRun.tokens(),
            distillSeconds,
            distillRun.steps() / distillSeconds);
        distilled = score("distilled", student, tokenizer, test, maxNew, began);
      }
      double liveStepsPerSecond = Double.NaN;
      Score live = null;
      if (cache != null && compareLive) {
        long l0 = System.nanoTime();
        try (LlamaModel student = LlamaModel.load(init)) {
          DistillTrainer.Result liveRun =
              new DistillTrainer(distill)
                  .train(
                      teacher, student, train, weights, validation, null, g -> progress("live", g));
          double seconds = (System.nanoTime() - l0) / 1e9;
          liveStepsPerSecond = liveRun.steps() / seconds;
          System.out.printf(
              Locale.ROOT,
              "distill (live teacher) trained %d steps, %d tokens in %.1f s (%.2f steps/s)%n",
              liveRun.steps(),
              liveRun.tokens(),
              seconds,
              liveStepsPerSecond);
          live = score("distilled-live", student, tokenizer, test, maxNew, began);
        }
        System.out.printf(
            Locale.ROOT,
            "distill_cache topk=%d steps=%d steps_per_s_cached=%.3f steps_per_s_live=%.3f "
                + "speedup=%.2f cache_seconds=%.1f cached_em=%.4f live_em=%.4f%n",
            cache.k(),
            distillRun.steps(),
            distillRun.steps() / distillSeconds,
            liveStepsPerSecond,
            distillRun.steps() / distillSeconds / liveStepsPerSecond,
            cacheSeconds,
            distilled.exactMatch(),
            live.exactMatch());
      }
      if (!Boolean.parseBoolean(a.getOrDefault("scratch", "true"))) {
        System.out.printf(
            Locale.ROOT,
            "probe distilled_em=%.4f retention=%.4f (no scratch run)%n",
            distilled.exactMatch(),
            distilled.exactMatch() / teacherScore.exactMatch());
        return;
      }
      Score fromScratch;
      DistillTrainer.Result scratchRun;
      t0 = System.nanoTime();
      try (LlamaModel student =
          LlamaModel.random(StudentInit.studentConfig(teacher.config(), shape), seed)) {
        scratchRun =
            new DistillTrainer(scratch)
                .train(
                    null, student, train, weights, validation, null, g -> progress("scratch", g));
        double seconds = (System.nanoTime() - t0) / 1e9;
        System.out.printf(
            Locale.ROOT,
            "scratch trained %d steps, %d tokens in %.0f s%n",
            scratchRun.steps(),
            scratchRun.tokens(),
            seconds);
        fromScratch = score("scratch", student, tokenizer, test, maxNew, began);
      }
      double wall = (System.nanoTime() - began) / 1e9;
      double retention = distilled.exactMatch() / teacherScore.exactMatch();
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
          "%-10s %10d %8.4f %11.4f %10s%n",
          "teacher",
          teacherParams,
          teacherScore.exactMatch(),
          teacherScore.perplexity(),
          "-");
      System.out.printf(
          Locale.ROOT,
          "%-10s %10d %8.4f %11.4f %10d%n",
          "distilled",
          studentParams,
          distilled.exactMatch(),
          distilled.perplexity(),
          distillRun.tokens());
      System.out.printf(
          Locale.ROOT,
          "%-10s %10d %8.4f %11.4f %10d%n",
          "scratch",
          studentParams,
          fromScratch.exactMatch(),
          fromScratch.perplexity(),
          scratchRun.tokens());
      System.out.printf(
          Locale.ROOT,
          "student/teacher params=%.3f retention=%.4f distilled-scratch=%+.4f "
              + "wall=%.0fs (lr=%s scratch-lr=%s T=%s alpha=%s)%n",
          (double) studentParams / teacherParams,
          retention,
          distilled.exactMatch() - fromScratch.exactMatch(),
          wall,
          lr,
          scratchLr,
          temperature,
          alpha);
      System.out.printf(
          Locale.ROOT,
          "distill teacher_params=%d student_params=%d teacher_em=%.4f distilled_em=%.4f "
              + "scratch_em=%.4f retention=%.4f topk=%d distill_steps_per_s=%.3f "
              + "live_steps_per_s=%.3f%n",
          teacherParams,
          studentParams,
          teacherScore.exactMatch(),
          distilled.exactMatch(),
          fromScratch.exactMatch(),
          retention,
          cache == null ? 0 : cache.k(),
          distillRun.steps() / distillSeconds,
          liveStepsPerSecond);
    }
  }

  private record Score(double exactMatch, double perplexity) {}

  private static Score score(
      String name,
      LlamaModel model,
      ByteTokenizer tokenizer,
      List<TaskExample> test,
      int maxNew,
      long began) {
    double em = ExactMatch.score(model, tokenizer, test, maxNew);
    double ppl = Perplexity.evaluate(model, tokenizer, test).perplexity();
    System.out.printf(
        Locale.ROOT,
        "%s exact_match=%.4f perplexity=%.4f (at %.0f s)%n",
        name,
        em,
        ppl,
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

  private static int maxNewTokens(List<TaskExample> examples) {
    int longest = 0;
    for (TaskExample e : examples) {
      longest = Math.max(longest, ByteTokenizer.instance().encode(e.answer()).length);
    }
    return longest + 2;
  }
}
