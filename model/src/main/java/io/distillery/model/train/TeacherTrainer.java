package io.distillery.model.train;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.pytorch.jni.JniUtils;
import ai.djl.training.GradientCollector;
import io.distillery.model.llama.LlamaModel;
import io.distillery.model.safetensors.DType;
import io.distillery.model.tasks.ExactMatch;
import io.distillery.model.tasks.Perplexity;
import io.distillery.model.tasks.TaskBatch;
import io.distillery.model.tasks.TaskExample;
import io.distillery.model.tasks.TaskJsonl;
import io.distillery.model.tasks.TaskSettings;
import io.distillery.model.tasks.TaskSuite;
import io.distillery.model.tokenizer.ByteTokenizer;
import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.SplittableRandom;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Trains a small Llama from scratch on a {@link TaskSuite} so the platform has a teacher whose
 * quality is checkable (exact match on held-out prompts) before and after compression.
 *
 * <p>Each step draws {@code batch} training examples (seeded, with replacement), packs them end to
 * end into rows ({@link TaskBatch#packed}, each example attending only to itself), takes the mean
 * NLL of the answer and {@code </s>} tokens, and applies {@link AdamW} with global-norm clipping
 * under a {@link LearningRateSchedule}.
 */
public final class TeacherTrainer {

  private static final Logger LOG = LoggerFactory.getLogger(TeacherTrainer.class);
  private static final String ENGINE = "PyTorch";
  private static final int MAX_CONSECUTIVE_BAD_STEPS = 10;

  private final TeacherConfig config;
  private final ProgressListener listener;
  private final ByteTokenizer tokenizer = ByteTokenizer.instance();
  private long trainedTokens;

  public TeacherTrainer(TeacherConfig config, ProgressListener listener) {
    this.config = Objects.requireNonNull(config, "config");
    this.listener = Objects.requireNonNull(listener, "listener");
  }

  /** The suite the config describes (deterministic for its seed). */
  public TaskSuite suite() {
    return TaskSuite.sample(
        config.tasks(),
        config.trainMix(),
        config.taskSettings(),
        config.trainExamples(),
        config.validationExamples(),
        config.testExamples(),
        config.seed() + 1);
  }

  /**
   * Trains on {@code suite.train()} and scores {@code suite.test()}.
   *
   * @param parent manager the model is created under; {@code null} for a new base manager
   */
  public TrainedTeacher train(TaskSuite suite, NDManager parent) {
    if (suite.train().isEmpty() || suite.test().isEmpty()) {
      throw new IllegalArgumentException("the suite needs training and test examples");
    }
    if (config.threads() > 0) {
      Engine.getEngine(ENGINE);
      JniUtils.setNumThreads(config.threads());
    }
    long started = System.nanoTime();
    LlamaModel model = LlamaModel.random(config.modelConfig(), config.seed(), parent);
    try {
      long parameters = 0;
      for (NDArray p : model.parameters().values()) {
        parameters += p.size();
      }
      LOG.info(
          "teacher training started params={} steps={} batch={} lr={} train={} test={}",
          parameters,
          config.steps(),
          config.batch(),
          config.learningRate(),
          suite.train().size(),
          suite.test().size());
      double[] losses = fit(model, suite.train(), suite.validation());
      double trainSeconds = (System.nanoTime() - started) / 1e9;
      double tokensPerSecond = trainedTokens / trainSeconds;
      Map<String, Double> byTask = exactMatchByTask(model, suite.test());
      double exactMatch = overall(byTask, suite.test());
      Perplexity.Result perplexity = Perplexity.evaluate(model, tokenizer, suite.test());
      double totalSeconds = (System.nanoTime() - started) / 1e9;
      TeacherReport report =
          new TeacherReport(
              parameters,
              losses[0],
              tailMean(losses),
              exactMatch,
              byTask,
              perplexity.perplexity(),
              trainSeconds,
              totalSeconds,
              tokensPerSecond);
      LOG.info(
          "teacher training finished params={} exactMatch={} perplexity={} seconds={}",
          parameters,
          exactMatch,
          perplexity.perplexity(),
          totalSeconds);
      return new TrainedTeacher(model, report);
    } catch (RuntimeException e) {
      model.close();
      throw e;
    }
  }

  /**
   * Generates the suite, trains, and writes an HF checkpoint ({@code config.json}, {@code
   * model.safetensors} F32, tokenizer files) plus the task settings ({@value
   * TaskSettings#FILE_NAME}), {@code validation.jsonl} and {@code test.jsonl} (the held-out
   * prompts) into {@code directory}.
   */
  public TeacherReport trainAndSave(Path directory) throws IOException {
    TaskSuite suite = suite();
    try (TrainedTeacher trained = train(suite, null)) {
      trained.model().save(directory, DType.F32);
      tokenizer.save(directory);
      config.taskSettings().write(directory);
      TaskJsonl.write(directory.resolve("validation.jsonl"), suite.validation());
      TaskJsonl.write(directory.resolve("test.jsonl"), suite.test());
      return trained.report();
    }
  }

  private double[] fit(LlamaModel model, List<TaskExample> train, List<TaskExample> validation) {
    SplittableRandom order = new SplittableRandom(config.seed() + 2);
    LearningRateSchedule schedule =
        new LearningRateSchedule(
            config.learningRate(),
            config.warmupSteps(),
            config.steps(),
            config.minLearningRateFraction());
    double[] losses = new double[config.steps()];
    trainedTokens = 0;
    long began = System.nanoTime();
    model.setTrainable(true);
    try (AdamW optimizer =
        new AdamW(model.parameters(), model.manager(), 0.9, 0.95, 1e-8, config.weightDecay())) {
      List<TaskExample> examples = new ArrayList<>(config.batch());
      int badSteps = 0;
      int skipped = 0;
      for (int step = 1; step <= config.steps(); step++) {
        examples.clear();
        for (int i = 0; i < config.batch(); i++) {
          examples.add(train.get(order.nextInt(train.size())));
        }
        TaskBatch batch = TaskBatch.packed(model, examples, tokenizer);
        double rate = schedule.at(step);
        float loss;
        double norm;
        try (NDManager scope = model.manager().newSubManager()) {
          try (GradientCollector collector = Engine.getEngine(ENGINE).newGradientCollector()) {
            NDArray logits = batch.logits(model, scope);
            NDArray mean = batch.answerNllMean(logits, scope);
            collector.backward(mean);
            loss = mean.getFloat();
          }
          norm = Float.isFinite(loss) ? optimizer.step(rate, config.maxGradNorm()) : Double.NaN;
        }
        if (Double.isFinite(norm)) {
          badSteps = 0;
        } else {
          skipped++;
          LOG.warn(
              "skipped step with non-finite loss or gradient step={} loss={} skipped={}",
              step,
              loss,
              skipped);
          if (++badSteps > MAX_CONSECUTIVE_BAD_STEPS) {
            throw new IllegalStateException(
                "training diverged: "
                    + badSteps
                    + " consecutive steps with non-finite loss or gradients up to step "
                    + step
                    + "; lower the learning rate");
          }
        }
        model.zeroGradients();
        losses[step - 1] = loss;
        trainedTokens += batch.realTokens();
        Map<String, Double> validationScores = Map.of();
        if (config.evalEvery() > 0
            && !validation.isEmpty()
            && (step % config.evalEvery() == 0 || step == config.steps())) {
          validationScores = exactMatchByTask(model, validation);
        }
        double elapsed = (System.nanoTime() - began) / 1e9;
        listener.onStep(
            new TrainingProgress(
                step,
                config.steps(),
                loss,
                rate,
                norm,
                trainedTokens / elapsed,
                elapsed,
                validationScores));
      }
    } finally {
      model.setTrainable(false);
    }
    return losses;
  }

  private Map<String, Double> exactMatchByTask(LlamaModel model, List<TaskExample> test) {
    Map<String, List<TaskExample>> byTask = new LinkedHashMap<>();
    for (TaskExample example : test) {
      byTask.computeIfAbsent(example.task(), task -> new ArrayList<>()).add(example);
    }
    Map<String, Double> scores = new LinkedHashMap<>();
    byTask.forEach(
        (task, examples) ->
            scores.put(task, ExactMatch.score(model, tokenizer, examples, maxNewTokens(examples))));
    return scores;
  }

  private static double overall(Map<String, Double> byTask, List<TaskExample> test) {
    Map<String, Integer> counts = new LinkedHashMap<>();
    for (TaskExample example : test) {
      counts.merge(example.task(), 1, Integer::sum);
    }
    double correct = 0;
    for (Map.Entry<String, Double> entry : byTask.entrySet()) {
      correct += entry.getValue() * counts.get(entry.getKey());
    }
    return correct / test.size();
  }

  /** Room for the longest answer plus {@code </s>} and one spare token. */
  static int maxNewTokens(List<TaskExample> examples) {
    int longest = 0;
    for (TaskExample example : examples) {
      longest = Math.max(longest, ByteTokenizer.instance().encode(example.answer()).length);
    }
    return longest + 2;
  }

  private static double tailMean(double[] losses) {
    int tail = Math.max(1, losses.length / 10);
    double sum = 0;
    for (int i = losses.length - tail; i < losses.length; i++) {
      sum += losses[i];
    }
    return sum / tail;
  }
}
