package io.distillery.distiller;

import io.distillery.platform.model.config.LlamaConfig;

/**
 * Params of the distiller stage, validated in the compact constructor; an invalid value fails the job as
 * non-retryable with the param's name in the message.
 *
 * @param student the student's shape, or null when an "hf-llama" student artefact is given as input
 * @param steps optimizer steps
 * @param batch sequences per step
 * @param seqLen maximum tokens per sequence
 * @param lr peak learning rate
 * @param temperature softmax temperature T of the KD term (default 4)
 * @param alpha weight of the KD term; 1-alpha weights the cross-entropy on labels (default 0.7)
 * @param reverseKl use KL(student || teacher) instead of KL(teacher || student)
 * @param misfireWeight sampling weight of misfire datasets (default 2)
 * @param checkpointEvery steps between resumable checkpoints
 * @param evalEvery steps between validation evaluations
 * @param patience evaluations without improvement before early stop
 * @param seed RNG seed
 * @param samples task suite size
 */
public record DistillerParams(Student student, Integer steps, Integer batch, Integer seqLen, Double lr,
    Double temperature, Double alpha, Boolean reverseKl, Double misfireWeight, Integer checkpointEvery,
    Integer evalEvery, Integer patience, Long seed, Integer samples) {

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
    steps = steps == null ? 100 : steps;
    batch = batch == null ? 8 : batch;
    seqLen = seqLen == null ? 128 : seqLen;
    lr = lr == null ? 1e-3 : lr;
    temperature = temperature == null ? 4.0 : temperature;
    alpha = alpha == null ? 0.7 : alpha;
    reverseKl = reverseKl != null && reverseKl;
    misfireWeight = misfireWeight == null ? 2.0 : misfireWeight;
    checkpointEvery = checkpointEvery == null ? 50 : checkpointEvery;
    evalEvery = evalEvery == null ? 25 : evalEvery;
    patience = patience == null ? 3 : patience;
    seed = seed == null ? 42L : seed;
    samples = samples == null ? 256 : samples;
    positive("steps", steps);
    positive("batch", batch);
    positive("seqLen", seqLen);
    positive("checkpointEvery", checkpointEvery);
    positive("evalEvery", evalEvery);
    positive("patience", patience);
    positive("samples", samples);
    if (!(lr > 0) || lr.isInfinite()) {
      throw new IllegalArgumentException("lr must be a positive number, got " + lr);
    }
    if (!(temperature > 0) || temperature.isInfinite()) {
      throw new IllegalArgumentException("temperature must be a positive number, got " + temperature);
    }
    if (!(alpha >= 0 && alpha <= 1)) {
      throw new IllegalArgumentException("alpha must be in [0,1], got " + alpha);
    }
    if (!(misfireWeight > 0) || misfireWeight.isInfinite()) {
      throw new IllegalArgumentException("misfireWeight must be a positive number, got " + misfireWeight);
    }
  }

  private static void positive(String name, int value) {
    if (value <= 0) {
      throw new IllegalArgumentException(name + " must be positive, got " + value);
    }
  }
}
