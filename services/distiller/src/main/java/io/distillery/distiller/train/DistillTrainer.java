package io.distillery.distiller.train;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.training.GradientCollector;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.distillery.distiller.DistillerParams;
import io.distillery.distiller.loss.KdLossGraph;
import io.distillery.distiller.teacher.TeacherLogitCache;
import io.distillery.distiller.teacher.TopKLogits;
import io.distillery.model.llama.LlamaModel;
import io.distillery.model.safetensors.DType;
import io.distillery.model.safetensors.SafetensorsFile;
import io.distillery.model.safetensors.SafetensorsWriter;
import io.distillery.model.safetensors.TensorData;
import io.distillery.model.tasks.TaskBatch;
import io.distillery.model.tasks.TaskExample;
import io.distillery.model.tokenizer.ByteTokenizer;
import io.distillery.model.train.AdamW;
import io.distillery.model.train.LearningRateSchedule;
import io.distillery.stage.FileTrees;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;

/**
 * Distils a teacher into a student (Hinton et al., arXiv 1503.02531): per step a seeded batch (the
 * RNG is {@code SplittableRandom(seed + step)}, so the "RNG position" of a checkpoint is its step)
 * packed into rows of several examples ({@code TaskBatch.packed}, each example attending only to
 * itself; rows no longer than the student's context), teacher logits on the fly, the {@link
 * KdLossGraph} loss, the platform's {@link AdamW} with global-norm clipping under a warmup + cosine
 * {@link LearningRateSchedule}. Every {@code evalEvery} steps the loss on the validation examples
 * decides an early stop after {@code patience} evaluations without improvement. Every {@code
 * checkpointEvery} steps the student's weights, the optimizer state and the trainer's counters are
 * written atomically into {@code checkpointDir}; {@link #train} resumes from there, so a resumed
 * run ends with the same weights as an uninterrupted one.
 *
 * <p>With {@code alpha == 0} the teacher is not run: the loss is the cross-entropy on the targets
 * alone (the from-scratch baseline of bench/distill).
 *
 * <p>The teacher's signal comes either from the teacher itself (its full logits on every batch), or
 * from its top-k logits cached once over the fixed list {@link #cachedExamples} ({@link
 * TeacherLogitCache}, loss {@link KdLossGraph#topKLoss}): then the teacher is not run during
 * training at all. Each packed segment of a batch is matched to the example it holds by its token
 * sequence, and its answer positions to that example's cached positions.
 */
public final class DistillTrainer {

  private static final String ENGINE = "PyTorch";
  private static final double BETA1 = 0.9;
  private static final double BETA2 = 0.999;
  private static final double EPS = 1e-8;
  private static final double MIN_LR_FRACTION = 0.1;
  private static final ObjectMapper JSON = new ObjectMapper();
  static final String CHECKPOINT = "ckpt";
  private static final String WEIGHTS = "student.safetensors";
  private static final String OPTIMIZER = "adamw.safetensors";
  private static final String STATE = "trainer.json";

  /**
   * One progress report.
   *
   * @param step last finished step (on resume: the checkpoint's step)
   * @param total steps of the run
   * @param loss mean training loss since the previous report (NaN on resume)
   * @param learningRate rate of the last step
   * @param tokensPerSecond non-pad tokens trained per second in this process
   * @param etaSeconds estimated seconds to the last step
   * @param validationLoss validation loss measured at this step, NaN when none was
   * @param tokens non-pad tokens trained so far, resumed steps included
   * @param resumed true for the report that a run continues from a checkpoint
   */
  public record Progress(
      int step,
      int total,
      double loss,
      double learningRate,
      double tokensPerSecond,
      double etaSeconds,
      double validationLoss,
      long tokens,
      boolean resumed) {}

  /**
   * Receives progress; may throw {@link InterruptedException} to stop the run (the last checkpoint
   * stays).
   */
  @FunctionalInterface
  public interface Listener {
    void onProgress(Progress progress) throws InterruptedException;
  }

  /**
   * What a finished run did.
   *
   * @param steps the last step trained (below the total when stopped early)
   * @param tokens non-pad tokens trained, resumed steps included
   * @param trainLoss mean loss of the last {@code progressEvery} steps
   * @param validationLoss last validation loss (NaN without validation examples)
   * @param resumedFrom checkpoint step this call started from (0 for a fresh run)
   * @param stoppedEarly whether the validation loss stopped the run
   */
  public record Result(
      int steps,
      long tokens,
      double trainLoss,
      double validationLoss,
      int resumedFrom,
      boolean stoppedEarly) {}

  /** The counters saved next to the weights. */
  record State(
      int step,
      long tokens,
      double bestValidation,
      int evalsWithoutImprovement,
      double trainLoss,
      double validationLoss,
      boolean stopped) {}

  private final DistillerParams params;
  private final ByteTokenizer tokenizer = ByteTokenizer.instance();

  public DistillTrainer(DistillerParams params) {
    this.params = params;
  }

  /**
   * A seeded batch for {@code step}: examples drawn with replacement in proportion to their
   * weights.
   */
  public List<TaskExample> batch(List<TaskExample> data, double[] cumulative, int step) {
    List<TaskExample> out = new ArrayList<>(params.batch());
    for (int i : batchIndices(cumulative, step)) {
      out.add(data.get(i));
    }
    return out;
  }

  /** The indices of {@link #batch}'s examples. */
  int[] batchIndices(double[] cumulative, int step) {
    SplittableRandom random = new SplittableRandom(params.seed() + step);
    double total = cumulative[cumulative.length - 1];
    int[] out = new int[params.batch()];
    for (int b = 0; b < params.batch(); b++) {
      double r = random.nextDouble() * total;
      int i = Arrays.binarySearch(cumulative, r);
      i = i >= 0 ? i + 1 : -i - 1;
      out[b] = Math.min(i, cumulative.length - 1);
    }
    return out;
  }

  /**
   * The examples a teacher cache for {@link #trainFromCache} must cover, in order: the training
   * examples, then the validation examples, both cut to {@code seqLen} as training cuts them.
   */
  public List<TaskExample> cachedExamples(List<TaskExample> data, List<TaskExample> validation) {
    List<TaskExample> out = new ArrayList<>(data.size() + validation.size());
    data.forEach(e -> out.add(truncate(e, params.seqLen())));
    validation.forEach(e -> out.add(truncate(e, params.seqLen())));
    return out;
  }

  /**
   * Cuts {@code <s> prompt answer </s>} to at most {@code seqLen} tokens: the prompt loses its
   * start first (the end, next to the answer, matters most), keeping at least one character; then
   * the answer loses its end.
   */
  public static TaskExample truncate(TaskExample e, int seqLen) {
    int budget = seqLen - 2;
    int promptBytes = bytes(e.prompt());
    int answerBytes = bytes(e.answer());
    if (promptBytes + answerBytes <= budget) {
      return e;
    }
    String prompt = e.prompt();
    int promptRoom = Math.max(1, budget - answerBytes);
    while (bytes(prompt) > promptRoom && prompt.length() > 1) {
      prompt = prompt.substring(prompt.offsetByCodePoints(0, 1));
    }
    String answer = e.answer();
    while (bytes(prompt) + bytes(answer) > budget && !answer.isEmpty()) {
      answer = answer.substring(0, answer.offsetByCodePoints(answer.length(), -1));
    }
    return new TaskExample(e.task(), prompt, answer);
  }

  private static int bytes(String s) {
    return s.getBytes(StandardCharsets.UTF_8).length;
  }

  /**
   * Trains {@code student} in place, resuming from {@code checkpointDir} when it holds a
   * checkpoint.
   *
   * @param teacher the teacher; may be null when {@code alpha == 0}
   * @param weights sampling weight per example of {@code data}
   * @param validation examples for the validation loss and early stop; empty for none
   * @param checkpointDir where checkpoints go; null for none
   */
  public Result train(
      LlamaModel teacher,
      LlamaModel student,
      List<TaskExample> data,
      double[] weights,
      List<TaskExample> validation,
      Path checkpointDir,
      Listener listener)
      throws IOException, InterruptedException {
    if (teacher == null && params.usesTeacherLogits()) {
      throw new IllegalArgumentException("alpha > 0 needs a teacher");
    }
    return train(
        new Signal(teacher, null, null),
        student,
        data,
        weights,
        validation,
        checkpointDir,
        listener);
  }

  /**
   * As {@link #train(LlamaModel, LlamaModel, List, double[], List, Path, Listener)}, with the
   * teacher's signal from its cached top-k over {@link #cachedExamples}{@code (data, validation)}.
   *
   * @throws IllegalArgumentException if the cache does not cover exactly those examples
   */
  public Result trainFromCache(
      TopKLogits teacher,
      LlamaModel student,
      List<TaskExample> data,
      double[] weights,
      List<TaskExample> validation,
      Path checkpointDir,
      Listener listener)
      throws IOException, InterruptedException {
    List<TaskExample> covered = cachedExamples(data, validation);
    if (teacher.examples() != covered.size()
        || !Arrays.equals(teacher.offsets(), TeacherLogitCache.offsets(covered))) {
      throw new IllegalArgumentException(
          "the teacher cache covers "
              + teacher.examples()
              + " examples / "
              + teacher.positions()
              + " positions, not these "
              + covered.size()
              + " training and validation examples");
    }
    return train(
        new Signal(null, teacher, TeacherLogitCache.sequences(covered)),
        student,
        data,
        weights,
        validation,
        checkpointDir,
        listener);
  }

  /**
   * The teacher's side of the loss: its model (full logits per batch), or its cached top-k with the
   * token sequences of the cached examples (training examples first), or neither (alpha 0).
   */
  private record Signal(LlamaModel model, TopKLogits cache, int[][] sequences) {}

  private Result train(
      Signal teacher,
      LlamaModel student,
      List<TaskExample> data,
      double[] weights,
      List<TaskExample> validation,
      Path checkpointDir,
      Listener listener)
      throws IOException, InterruptedException {
    if (data.isEmpty()) {
      throw new IllegalArgumentException("the dataset is empty: nothing to distil");
    }
    if (weights.length != data.size()) {
      throw new IllegalArgumentException(
          weights.length + " weights for " + data.size() + " examples");
    }
    List<TaskExample> train = data.stream().map(e -> truncate(e, params.seqLen())).toList();
    List<TaskExample> held = validation.stream().map(e -> truncate(e, params.seqLen())).toList();
    double[] cumulative = new double[weights.length];
    double sum = 0;
    for (int i = 0; i < weights.length; i++) {
      if (!(weights[i] > 0) || Double.isInfinite(weights[i])) {
        throw new IllegalArgumentException(
            "example " + i + " has weight " + weights[i] + "; weights must be > 0");
      }
      sum += weights[i];
      cumulative[i] = sum;
    }
    int total = params.steps();
    LearningRateSchedule schedule =
        new LearningRateSchedule(params.lr(), params.warmup(), total, MIN_LR_FRACTION);
    Map<String, NDArray> parameters = student.parameters();
    try (AdamW optimizer =
        new AdamW(parameters, student.manager(), BETA1, BETA2, EPS, params.weightDecay())) {
      State state = checkpointDir == null ? null : restore(checkpointDir, parameters, optimizer);
      int start = state == null ? 0 : state.step();
      long tokens = state == null ? 0 : state.tokens();
      double best = state == null ? Double.POSITIVE_INFINITY : state.bestValidation();
      int worse = state == null ? 0 : state.evalsWithoutImprovement();
      double trainLoss = state == null ? Double.NaN : state.trainLoss();
      double validationLoss = state == null ? Double.NaN : state.validationLoss();
      boolean stopped = state != null && state.stopped();
      if (start > 0) {
        listener.onProgress(
            new Progress(
                start,
                total,
                Double.NaN,
                schedule.at(Math.max(1, start)),
                0,
                Double.NaN,
                Double.NaN,
                tokens,
                true));
      }
      long began = System.nanoTime();
      long tokensHere = 0;
      double window = 0;
      int windowSteps = 0;
      int step = start;
      student.setTrainable(true);
      try {
        while (!stopped && step < total) {
          if (Thread.interrupted()) {
            throw new InterruptedException("distillation interrupted after step " + step);
          }
          step++;
          int[] drawn = batchIndices(cumulative, step);
          List<TaskExample> examples = new ArrayList<>(drawn.length);
          for (int i : drawn) {
            examples.add(train.get(i));
          }
          TaskBatch batch = TaskBatch.packed(student, examples, tokenizer);
          double rate = schedule.at(step);
          float loss;
          try (NDManager scope = student.manager().newSubManager()) {
            NDArray teacherLogits =
                params.usesTeacherLogits() && teacher.model() != null
                    ? batch.logits(teacher.model(), scope)
                    : null;
            try (GradientCollector collector = Engine.getEngine(ENGINE).newGradientCollector()) {
              NDArray l =
                  loss(batch.logits(student, scope), teacher, teacherLogits, batch, drawn, scope);
              collector.backward(l);
              loss = l.getFloat();
            }
            if (!Float.isFinite(loss)) {
              throw new IllegalStateException(
                  "distillation diverged at step " + step + " (loss " + loss + "); lower lr");
            }
            optimizer.step(rate, params.maxGradNorm());
          }
          student.zeroGradients();
          tokens += batch.realTokens();
          tokensHere += batch.realTokens();
          window += loss;
          windowSteps++;
          double validationNow = Double.NaN;
          if (!held.isEmpty() && (step % params.evalEvery() == 0 || step == total)) {
            validationNow = validationLoss(teacher, student, held, train.size());
            validationLoss = validationNow;
            if (validationNow < best) {
              best = validationNow;
              worse = 0;
            } else if (++worse >= params.patience()) {
              stopped = true;
            }
          }
          boolean report = step % params.progressEvery() == 0 || step == total || stopped;
          if (report) {
            trainLoss = window / windowSteps;
            window = 0;
            windowSteps = 0;
          }
          if (checkpointDir != null
              && (step % params.checkpointEvery() == 0 || step == total || stopped)) {
            double lossSoFar = windowSteps > 0 ? window / windowSteps : trainLoss;
            save(
                checkpointDir,
                parameters,
                optimizer,
                new State(step, tokens, best, worse, lossSoFar, validationLoss, stopped));
          }
          if (report || !Double.isNaN(validationNow)) {
            double elapsed = (System.nanoTime() - began) / 1e9;
            double eta = elapsed / (step - start) * (total - step);
            listener.onProgress(
                new Progress(
                    step,
                    total,
                    report ? trainLoss : loss,
                    rate,
                    tokensHere / elapsed,
                    stopped ? 0 : eta,
                    validationNow,
                    tokens,
                    false));
          }
        }
      } finally {
        student.setTrainable(false);
      }
      if (windowSteps > 0) {
        trainLoss = window / windowSteps;
      }
      return new Result(step, tokens, trainLoss, validationLoss, start, stopped);
    }
  }

  /**
   * The loss of one batch.
   *
   * @param examples the index of each of the batch's examples among the cached ones (training
   *     examples first, then the validation examples)
   */
  private NDArray loss(
      NDArray logits,
      Signal teacher,
      NDArray teacherLogits,
      TaskBatch batch,
      int[] examples,
      NDManager scope) {
    if (!params.usesTeacherLogits()) {
      return batch.answerNllMean(logits, scope);
    }
    if (teacher.cache() != null) {
      return KdLossGraph.topKLoss(
          logits,
          teacher.cache(),
          cachePositions(batch, examples, teacher.sequences(), teacher.cache()),
          batch.targets(),
          params.temperature(),
          params.alpha(),
          params.reverseKl(),
          scope);
    }
    return KdLossGraph.loss(
        logits,
        teacherLogits,
        batch.targets(),
        batch.mask(),
        params.temperature(),
        params.alpha(),
        params.reverseKl(),
        scope);
  }

  /**
   * Per position of {@code batch} ({@code rows * length}), the cached position of the teacher's
   * top-k for its target, or -1 where the target is not scored. A packed row's segments are matched
   * to {@code examples} by their token sequences (equal sequences have equal teacher logits, so any
   * match is right); in an unpacked batch row r holds {@code examples[r]}.
   *
   * @throws IllegalStateException if a segment matches no example or its answer positions differ
   *     from the cache's
   */
  static int[] cachePositions(
      TaskBatch batch, int[] examples, int[][] sequences, TopKLogits cache) {
    int length = batch.length();
    int[] out = new int[batch.size() * length];
    Arrays.fill(out, -1);
    boolean[] used = new boolean[examples.length];
    float[] mask = batch.mask();
    for (int r = 0; r < batch.size(); r++) {
      int t = 0;
      while (t < length) {
        int end;
        int example;
        if (batch.segments() == null) {
          end = length;
          example = examples[r];
        } else {
          int segment = batch.segments()[r][t];
          end = t + 1;
          while (end < length && batch.segments()[r][end] == segment) {
            end++;
          }
          if (segment < 0) {
            t = end;
            continue;
          }
          example = match(batch, r, t, end, examples, sequences, used);
        }
        int j = 0;
        for (int p = t; p < end; p++) {
          if (mask[r * length + p] > 0) {
            if (j >= cache.positions(example)) {
              throw new IllegalStateException(
                  "example " + example + " has more answer positions than the teacher cache");
            }
            out[r * length + p] = cache.offset(example) + j++;
          }
        }
        if (j != cache.positions(example)) {
          throw new IllegalStateException(
              "example "
                  + example
                  + " has "
                  + j
                  + " answer positions in the batch, "
                  + cache.positions(example)
                  + " in the teacher cache");
        }
        t = end;
      }
    }
    return out;
  }

  /** The unused drawn example whose sequence is row r's segment {@code [from, to)}. */
  private static int match(
      TaskBatch batch, int r, int from, int to, int[] examples, int[][] sequences, boolean[] used) {
    int[] row = batch.inputs()[r];
    int last = Math.toIntExact(batch.targets()[r * batch.length() + to - 1]);
    for (int i = 0; i < examples.length; i++) {
      int[] sequence = sequences[examples[i]];
      if (used[i] || sequence.length != to - from + 1 || sequence[to - from] != last) {
        continue;
      }
      if (Arrays.equals(row, from, to, sequence, 0, to - from)) {
        used[i] = true;
        return examples[i];
      }
    }
    throw new IllegalStateException(
        "a packed segment of row " + r + " matches none of the batch's examples");
  }

  /** The training loss on {@code examples}, averaged over answer tokens, without gradients. */
  public double validationLoss(LlamaModel teacher, LlamaModel student, List<TaskExample> examples) {
    return validationLoss(new Signal(teacher, null, null), student, examples, 0);
  }

  /**
   * The loss on {@code examples} without gradients; with a cache they are the cached examples from
   * index {@code first} on.
   */
  private double validationLoss(
      Signal teacher, LlamaModel student, List<TaskExample> examples, int first) {
    double sum = 0;
    long tokens = 0;
    for (int from = 0; from < examples.size(); from += params.batch()) {
      int to = Math.min(examples.size(), from + params.batch());
      TaskBatch batch = TaskBatch.packed(student, examples.subList(from, to), tokenizer);
      int[] indices = new int[to - from];
      for (int i = 0; i < indices.length; i++) {
        indices[i] = first + from + i;
      }
      try (NDManager scope = student.manager().newSubManager()) {
        NDArray teacherLogits =
            params.usesTeacherLogits() && teacher.model() != null
                ? batch.logits(teacher.model(), scope)
                : null;
        NDArray logits = batch.logits(student, scope);
        sum +=
            loss(logits.stopGradient(), teacher, teacherLogits, batch, indices, scope).getFloat()
                * batch.answerTokens();
        tokens += batch.answerTokens();
      }
    }
    return sum / Math.max(1, tokens);
  }

  /**
   * Writes weights, optimizer state and counters into {@code dir/ckpt} atomically (temp dir, then
   * rename).
   */
  static void save(Path dir, Map<String, NDArray> parameters, AdamW optimizer, State state)
      throws IOException {
    Files.createDirectories(dir);
    Path tmp = dir.resolve(CHECKPOINT + ".tmp");
    FileTrees.delete(tmp);
    Files.createDirectories(tmp);
    Map<String, TensorData> tensors = new LinkedHashMap<>();
    for (Map.Entry<String, NDArray> e : parameters.entrySet()) {
      tensors.put(
          e.getKey(),
          TensorData.ofFloats(
              DType.F32, e.getValue().getShape().getShape(), e.getValue().toFloatArray()));
    }
    SafetensorsWriter.write(
        tmp.resolve(WEIGHTS), tensors, Map.of("step", Integer.toString(state.step())));
    optimizer.saveState(tmp.resolve(OPTIMIZER));
    JSON.writeValue(tmp.resolve(STATE).toFile(), state);
    Path target = dir.resolve(CHECKPOINT);
    Path old = dir.resolve(CHECKPOINT + ".old");
    FileTrees.delete(old);
    if (Files.exists(target)) {
      Files.move(target, old, StandardCopyOption.ATOMIC_MOVE);
    }
    Files.move(tmp, target, StandardCopyOption.ATOMIC_MOVE);
    FileTrees.delete(old);
  }

  /**
   * Loads the checkpoint in {@code dir/ckpt} (or a leftover {@code ckpt.old}) if any; null when
   * there is none.
   */
  static State restore(Path dir, Map<String, NDArray> parameters, AdamW optimizer)
      throws IOException {
    Path ckpt = dir.resolve(CHECKPOINT);
    if (!Files.exists(ckpt.resolve(STATE))) {
      ckpt = dir.resolve(CHECKPOINT + ".old"); // killed between the two renames
      if (!Files.exists(ckpt.resolve(STATE))) {
        return null;
      }
    }
    State state = JSON.readValue(ckpt.resolve(STATE).toFile(), State.class);
    try (SafetensorsFile weights = SafetensorsFile.open(ckpt.resolve(WEIGHTS))) {
      for (Map.Entry<String, NDArray> e : parameters.entrySet()) {
        long[] wanted = e.getValue().getShape().getShape();
        if (!weights.contains(e.getKey())) {
          throw new CheckpointMismatchException(
              ckpt,
              "does not fit the student: it has no "
                  + e.getKey()
                  + " (the student's is "
                  + Arrays.toString(wanted)
                  + "); delete it to start over");
        }
        long[] saved = weights.info(e.getKey()).shape();
        if (!Arrays.equals(saved, wanted)) {
          throw new CheckpointMismatchException(
              ckpt,
              "does not fit the student: "
                  + e.getKey()
                  + " is "
                  + Arrays.toString(saved)
                  + " in the checkpoint and "
                  + Arrays.toString(wanted)
                  + " in the student; delete it to start over");
        }
        e.getValue().set(weights.floats(e.getKey()));
      }
    }
    optimizer.loadState(ckpt.resolve(OPTIMIZER));
    return state;
  }

  /** The step of the checkpoint in {@code dir}, 0 when there is none. */
  public static int checkpointStep(Path dir) throws IOException {
    Path state = dir.resolve(CHECKPOINT).resolve(STATE);
    return Files.exists(state) ? JSON.readValue(state.toFile(), State.class).step() : 0;
  }
}
