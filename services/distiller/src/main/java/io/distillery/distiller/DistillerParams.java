package io.distillery.distiller;

import io.distillery.model.config.LlamaConfig;
import io.distillery.model.tasks.TaskKind;
import java.util.List;
import java.util.Set;

/**
 * Params of the distiller stage, defaulted and validated here and nowhere else; an invalid value
 * fails the job as non-retryable with the param's name in the message.
 *
 * @param student the student's shape, initialised from the teacher; ignored when a student
 *     checkpoint is given as an "hf-checkpoint"/"hf-llama" input (re-distillation), exclusive with
 *     {@code studentUri}
 * @param slicing how a {@code student} shape is cut from the teacher: "activations" keeps the units
 *     with the largest activations on {@code calibrationSamples} training sequences (default),
 *     "first" the first units
 * @param studentUri an existing HF checkpoint directory (path or file: URI) to start the student
 *     from
 * @param source "tasks" to generate {@code samples} task-suite prompts in the stage (with the task
 *     settings the teacher was trained on, {@code distillery-tasks.json} beside it, else the
 *     defaults); null for none
 * @param tasks task kinds {@code source: tasks} generates (add, copy, rev, kv, sort); default: the
 *     kinds of the teacher's held-out split ({@code test.jsonl} next to it, written by the teacher
 *     trainer), else all
 * @param dataset a user JSONL file ({"prompt", "answer" optional, "task" optional} per line)
 * @param samples number of task-suite prompts when {@code source} is "tasks"
 * @param decoding how the teacher continues prompts into traces: "greedy" or "sampled" (T=1, top-p
 *     0.9, seeded)
 * @param labels train on ground-truth answers where a prompt has one (CE on labels); false
 *     continues every prompt with the teacher and trains on the traces alone
 * @param maxNewTokens longest teacher trace
 * @param steps optimizer steps
 * @param batch sequences per step
 * @param seqLen maximum tokens per sequence ({@code <s> prompt answer </s>}); longer prompts lose
 *     their start
 * @param lr peak learning rate (AdamW)
 * @param warmup linear warmup steps before the cosine decay (default steps/10)
 * @param weightDecay decoupled weight decay on matrices
 * @param maxGradNorm global gradient-norm clip
 * @param temperature softmax temperature T of the KD term (default 4)
 * @param alpha weight of the KD term; 1-alpha weights the cross-entropy on the targets (default
 *     0.7)
 * @param reverseKl use KL(student || teacher) instead of KL(teacher || student)
 * @param misfireWeight sampling weight of misfire rows relative to the other rows (default 4)
 * @param checkpointEvery steps between resumable checkpoints in the job's work directory
 * @param evalEvery steps between validation-loss evaluations
 * @param patience evaluations without a lower validation loss before the run stops early
 * @param progressEvery steps between progress events
 * @param evalSamples size of the held-out sample for the validation loss and the exact-match score
 * @param seed RNG seed of prompts, traces, batches and the held-out split
 * @param topK teacher token ids cached per answer position (default 64; at least the vocabulary
 *     size gives the exact full-logit loss): the teacher runs once over the training and validation
 *     examples and the student trains on its cached top-k plus the mass of the rest ({@code
 *     KdLoss#topKLoss})
 * @param streamTeacher how the teacher runs: true streams it one decoder layer at a time from the
 *     mapped checkpoint (a teacher larger than memory; needs labelled data and {@code slicing:
 *     first} or a student checkpoint), false holds it in memory (refused when it does not fit);
 *     default: in memory when it fits the worker's budget, else streamed
 */
public record DistillerParams(
    Student student,
    String slicing,
    String studentUri,
    String source,
    List<String> tasks,
    String dataset,
    Integer samples,
    String decoding,
    Boolean labels,
    Integer maxNewTokens,
    Integer steps,
    Integer batch,
    Integer seqLen,
    Double lr,
    Integer warmup,
    Double weightDecay,
    Double maxGradNorm,
    Double temperature,
    Double alpha,
    Boolean reverseKl,
    Double misfireWeight,
    Integer checkpointEvery,
    Integer evalEvery,
    Integer patience,
    Integer progressEvery,
    Integer evalSamples,
    Long seed,
    Integer topK,
    Boolean streamTeacher) {

  public static final String SOURCE_TASKS = "tasks";
  public static final Set<String> DECODINGS = Set.of("greedy", "sampled");
  public static final Set<String> SLICINGS = Set.of("activations", "first");

  /** Teacher ids cached per position unless {@code topK} says otherwise. */
  public static final int DEFAULT_TOP_K = 64;

  /** Training sequences the activation importance is measured on. */
  public static final int CALIBRATION_SEQUENCES = 64;

  /** The student's shape; every dimension must be at most the teacher's. */
  public record Student(int layers, int hidden, int heads, int kvHeads, int intermediate) {
    public Student {
      positive("student.layers", layers);
      positive("student.hidden", hidden);
      positive("student.heads", heads);
      positive("student.kvHeads", kvHeads);
      positive("student.intermediate", intermediate);
      if (hidden % heads != 0) {
        throw new IllegalArgumentException(
            "student.heads " + heads + " does not divide student.hidden " + hidden);
      }
      if (heads % kvHeads != 0) {
        throw new IllegalArgumentException(
            "student.kvHeads " + kvHeads + " does not divide student.heads " + heads);
      }
    }

    /** Fails naming the first dimension larger than the teacher's. */
    public void requireFits(LlamaConfig teacher) {
      larger("student.layers", layers, teacher.numHiddenLayers());
      larger("student.hidden", hidden, teacher.hiddenSize());
      larger("student.heads", heads, teacher.numAttentionHeads());
      larger("student.kvHeads", kvHeads, teacher.numKeyValueHeads());
      larger("student.intermediate", intermediate, teacher.intermediateSize());
    }

    private static void larger(String name, int student, int teacher) {
      if (student > teacher) {
        throw new IllegalArgumentException(
            name + " " + student + " is larger than the teacher's " + teacher);
      }
    }
  }

  public DistillerParams {
    slicing = slicing == null ? "activations" : slicing;
    samples = samples == null ? 256 : samples;
    decoding = decoding == null ? "greedy" : decoding;
    labels = labels == null || labels;
    maxNewTokens = maxNewTokens == null ? 32 : maxNewTokens;
    steps = steps == null ? 100 : steps;
    batch = batch == null ? 8 : batch;
    seqLen = seqLen == null ? 128 : seqLen;
    lr = lr == null ? 1e-3 : lr;
    warmup = warmup == null ? steps / 10 : warmup;
    weightDecay = weightDecay == null ? 0.0 : weightDecay;
    maxGradNorm = maxGradNorm == null ? 1.0 : maxGradNorm;
    temperature = temperature == null ? 4.0 : temperature;
    alpha = alpha == null ? 0.7 : alpha;
    reverseKl = reverseKl != null && reverseKl;
    misfireWeight = misfireWeight == null ? 4.0 : misfireWeight;
    checkpointEvery = checkpointEvery == null ? 50 : checkpointEvery;
    evalEvery = evalEvery == null ? 25 : evalEvery;
    patience = patience == null ? 3 : patience;
    progressEvery = progressEvery == null ? 10 : progressEvery;
    evalSamples = evalSamples == null ? 64 : evalSamples;
    seed = seed == null ? 42L : seed;
    topK = topK == null ? DEFAULT_TOP_K : topK;
    if (student != null && studentUri != null) {
      throw new IllegalArgumentException(
          "student and studentUri exclude each other: give a shape or a checkpoint");
    }
    if (studentUri != null && studentUri.isBlank()) {
      throw new IllegalArgumentException("studentUri must not be blank");
    }
    if (source != null && !SOURCE_TASKS.equals(source)) {
      throw new IllegalArgumentException(
          "source must be \"" + SOURCE_TASKS + "\", got \"" + source + "\"");
    }
    if (tasks != null) {
      if (tasks.isEmpty()) {
        throw new IllegalArgumentException("tasks must name at least one task kind");
      }
      tasks.forEach(TaskKind::of); // fails naming an unknown kind
      tasks = List.copyOf(tasks);
    }
    if (dataset != null && dataset.isBlank()) {
      throw new IllegalArgumentException("dataset must not be blank");
    }
    if (!SLICINGS.contains(slicing)) {
      throw new IllegalArgumentException(
          "slicing must be activations or first, got \"" + slicing + "\"");
    }
    if (!DECODINGS.contains(decoding)) {
      throw new IllegalArgumentException(
          "decoding must be greedy or sampled, got \"" + decoding + "\"");
    }
    positive("samples", samples);
    positive("maxNewTokens", maxNewTokens);
    positive("steps", steps);
    positive("batch", batch);
    if (seqLen < 3) {
      throw new IllegalArgumentException(
          "seqLen must be at least 3 (<s>, one prompt and one answer token), got " + seqLen);
    }
    positive("checkpointEvery", checkpointEvery);
    positive("evalEvery", evalEvery);
    positive("patience", patience);
    positive("progressEvery", progressEvery);
    positive("evalSamples", evalSamples);
    positive("topK", topK);
    if (warmup < 0 || warmup > steps) {
      throw new IllegalArgumentException(
          "warmup must be in [0, steps=" + steps + "], got " + warmup);
    }
    positiveNumber("lr", lr);
    positiveNumber("temperature", temperature);
    positiveNumber("misfireWeight", misfireWeight);
    positiveNumber("maxGradNorm", maxGradNorm);
    if (!(weightDecay >= 0) || weightDecay.isInfinite()) {
      throw new IllegalArgumentException(
          "weightDecay must be a non-negative number, got " + weightDecay);
    }
    if (!(alpha >= 0 && alpha <= 1)) {
      throw new IllegalArgumentException("alpha must be in [0,1], got " + alpha);
    }
  }

  /**
   * Whether the KD term is used at all (alpha > 0): with alpha 0 the teacher is not run during
   * training.
   */
  public boolean usesTeacherLogits() {
    return alpha > 0;
  }

  private static void positive(String name, int value) {
    if (value <= 0) {
      throw new IllegalArgumentException(name + " must be positive, got " + value);
    }
  }

  private static void positiveNumber(String name, Double value) {
    if (!(value > 0) || value.isInfinite()) {
      throw new IllegalArgumentException(name + " must be a positive number, got " + value);
    }
  }
}
