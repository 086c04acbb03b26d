package io.distillery.model.train;

import io.distillery.model.config.LlamaConfig;
import io.distillery.model.tasks.TaskKind;
import io.distillery.model.tasks.TaskSettings;
import io.distillery.model.tokenizer.ByteTokenizer;
import java.util.List;

/**
 * Everything that defines one teacher training run: model shape, optimisation, and the task suite.
 * The same config and seed give the same model.
 *
 * @param layers decoder layers
 * @param hidden hidden size
 * @param heads attention heads
 * @param kvHeads key/value heads (grouped-query attention when fewer than heads)
 * @param intermediate SwiGLU width
 * @param steps optimizer steps
 * @param batch sequences per step
 * @param learningRate peak AdamW rate
 * @param warmupSteps linear warmup steps
 * @param minLearningRateFraction cosine floor as a fraction of the peak
 * @param weightDecay decoupled weight decay (matrices only)
 * @param maxGradNorm global-norm clip; non-positive for none
 * @param seed seeds the weights, the suite and the batch order
 * @param threads PyTorch intra-op threads for the run (process-wide); 0 keeps the engine's setting.
 *     One thread is often fastest for these small matrices on a busy machine.
 * @param tasks task kinds, drawn in equal numbers for the validation and test splits
 * @param trainMix the train split's rotation of task kinds (a kind named twice gets twice the
 *     examples); empty for {@code tasks} in equal numbers
 * @param taskSettings task difficulty
 * @param trainExamples training examples, drawn independently (a prompt may repeat, never a
 *     held-out one); by default {@code steps * batch}, as many as the run draws
 * @param validationExamples distinct validation prompts
 * @param testExamples distinct test prompts
 * @param evalEvery steps between exact-match evaluations on the validation split (0 for none);
 *     their time counts as training time
 */
public record TeacherConfig(
    int layers,
    int hidden,
    int heads,
    int kvHeads,
    int intermediate,
    int steps,
    int batch,
    double learningRate,
    int warmupSteps,
    double minLearningRateFraction,
    double weightDecay,
    double maxGradNorm,
    long seed,
    int threads,
    List<TaskKind> tasks,
    List<TaskKind> trainMix,
    TaskSettings taskSettings,
    int trainExamples,
    int validationExamples,
    int testExamples,
    int evalEvery) {

  public TeacherConfig {
    tasks = List.copyOf(tasks);
    trainMix = trainMix.isEmpty() ? tasks : List.copyOf(trainMix);
    require(layers >= 1, "layers", layers);
    require(hidden >= 2, "hidden", hidden);
    require(
        heads >= 1 && hidden % heads == 0 && (hidden / heads) % 2 == 0,
        "heads (must divide hidden into even head dims)",
        heads);
    require(kvHeads >= 1 && heads % kvHeads == 0, "kvHeads (must divide heads)", kvHeads);
    require(intermediate >= 1, "intermediate", intermediate);
    require(steps >= 1, "steps", steps);
    require(batch >= 1, "batch", batch);
    require(learningRate > 0, "learningRate", learningRate);
    require(warmupSteps >= 0, "warmupSteps", warmupSteps);
    require(
        minLearningRateFraction >= 0 && minLearningRateFraction <= 1,
        "minLearningRateFraction",
        minLearningRateFraction);
    require(weightDecay >= 0, "weightDecay", weightDecay);
    require(threads >= 0, "threads", threads);
    require(!tasks.isEmpty(), "tasks", tasks);
    require(trainExamples >= 1, "trainExamples", trainExamples);
    require(validationExamples >= 0, "validationExamples", validationExamples);
    require(testExamples >= 1, "testExamples", testExamples);
    require(evalEvery >= 0, "evalEvery", evalEvery);
  }

  private static void require(boolean ok, String name, Object value) {
    if (!ok) {
      throw new IllegalArgumentException("invalid teacher parameter " + name + ": " + value);
    }
  }

  /** The Llama config of the model this run trains (byte vocabulary, untied head). */
  public LlamaConfig modelConfig() {
    return LlamaConfig.builder()
        .vocabSize(ByteTokenizer.VOCAB_SIZE)
        .hiddenSize(hidden)
        .intermediateSize(intermediate)
        .numHiddenLayers(layers)
        .numAttentionHeads(heads)
        .numKeyValueHeads(kvHeads)
        .maxPositionEmbeddings(256)
        .rmsNormEps(1e-5)
        .bosTokenId(ByteTokenizer.BOS_ID)
        .eosTokenIds(List.of(ByteTokenizer.EOS_ID))
        .padTokenId(ByteTokenizer.PAD_ID)
        .build();
  }

  /**
   * The real teacher: 4 layers, hidden 256, MLP width 768 (so INT4 groups of 32, 64 and 128 divide
   * every width), ~3.5M parameters, all five tasks (two-digit additions), 4200 steps on 268,800
   * examples with {@link #WEIGHTED_MIX} unless other tasks or another mix are given.
   */
  public static Builder teacher() {
    return new Builder();
  }

  public Builder toBuilder() {
    return new Builder()
        .layers(layers)
        .hidden(hidden)
        .heads(heads)
        .kvHeads(kvHeads)
        .intermediate(intermediate)
        .steps(steps)
        .batch(batch)
        .learningRate(learningRate)
        .warmupSteps(warmupSteps)
        .minLearningRateFraction(minLearningRateFraction)
        .weightDecay(weightDecay)
        .maxGradNorm(maxGradNorm)
        .seed(seed)
        .threads(threads)
        .tasks(tasks)
        .trainMix(trainMix)
        .taskSettings(taskSettings)
        .trainExamples(trainExamples)
        .validationExamples(validationExamples)
        .testExamples(testExamples)
        .evalEvery(evalEvery);
  }

  /**
   * The real teacher's train mix: the kinds it learns last (addition, recall, sort) get more of the
   * training set; copy and reverse reach 1.0 on a ninth of it. The runs behind it are in the
   * README's teacher section.
   */
  public static final List<TaskKind> WEIGHTED_MIX =
      List.of(
          TaskKind.ADD,
          TaskKind.ADD,
          TaskKind.COPY,
          TaskKind.REVERSE,
          TaskKind.RECALL,
          TaskKind.RECALL,
          TaskKind.RECALL,
          TaskKind.SORT,
          TaskKind.SORT);

  /** Builds configs; defaults are the real teacher's. */
  public static final class Builder {
    private int layers = 4;
    private int hidden = 256;
    private int heads = 4;
    private int kvHeads = 4;
    private int intermediate = 768; // Llama's rule: 8/3 x hidden rounded up to a multiple of 256
    private int steps =
        4200; // packed batches: ~10% more steps than 3800 unpacked in the same time (budget 15 min)
    private int batch = 64;
    private double learningRate = 2e-3;
    private int warmupSteps = 100;
    private double minLearningRateFraction = 0.1;
    private double weightDecay = 0.1;
    private double maxGradNorm = 1.0;
    private long seed = 1;
    private int threads;
    private List<TaskKind> tasks = List.of(TaskKind.values());
    private List<TaskKind> trainMix;
    private TaskSettings taskSettings = TaskSettings.defaults().withAdditionDigits(2);
    private Integer trainExamples; // null: steps * batch
    private int validationExamples = 500;
    private int testExamples = 1000;
    private int evalEvery;

    private Builder() {}

    public Builder layers(int value) {
      layers = value;
      return this;
    }

    public Builder hidden(int value) {
      hidden = value;
      return this;
    }

    public Builder heads(int value) {
      heads = value;
      return this;
    }

    public Builder kvHeads(int value) {
      kvHeads = value;
      return this;
    }

    public Builder intermediate(int value) {
      intermediate = value;
      return this;
    }

    public Builder steps(int value) {
      steps = value;
      return this;
    }

    public Builder batch(int value) {
      batch = value;
      return this;
    }

    public Builder learningRate(double value) {
      learningRate = value;
      return this;
    }

    public Builder warmupSteps(int value) {
      warmupSteps = value;
      return this;
    }

    public Builder minLearningRateFraction(double value) {
      minLearningRateFraction = value;
      return this;
    }

    public Builder weightDecay(double value) {
      weightDecay = value;
      return this;
    }

    public Builder maxGradNorm(double value) {
      maxGradNorm = value;
      return this;
    }

    public Builder seed(long value) {
      seed = value;
      return this;
    }

    public Builder threads(int value) {
      threads = value;
      return this;
    }

    public Builder tasks(List<TaskKind> value) {
      tasks = value;
      return this;
    }

    public Builder trainMix(List<TaskKind> value) {
      trainMix = value;
      return this;
    }

    public Builder taskSettings(TaskSettings value) {
      taskSettings = value;
      return this;
    }

    public Builder trainExamples(int value) {
      trainExamples = value;
      return this;
    }

    public Builder validationExamples(int value) {
      validationExamples = value;
      return this;
    }

    public Builder testExamples(int value) {
      testExamples = value;
      return this;
    }

    public Builder evalEvery(int value) {
      evalEvery = value;
      return this;
    }

    public TeacherConfig build() {
      return new TeacherConfig(
          layers,
          hidden,
          heads,
          kvHeads,
          intermediate,
          steps,
          batch,
          learningRate,
          warmupSteps,
          minLearningRateFraction,
          weightDecay,
          maxGradNorm,
          seed,
          threads,
          tasks,
          trainMix != null
              ? trainMix
              : tasks.equals(List.of(TaskKind.values())) ? WEIGHTED_MIX : tasks,
          taskSettings,
          trainExamples != null ? trainExamples : Math.multiplyExact(steps, batch),
          validationExamples,
          testExamples,
          evalEvery);
    }
  }
}
