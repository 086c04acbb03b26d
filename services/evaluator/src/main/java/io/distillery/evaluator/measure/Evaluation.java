package io.distillery.evaluator.measure;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import io.distillery.model.CorruptCheckpointException;
import io.distillery.model.config.LlamaConfig;
import io.distillery.model.config.LlamaTensorNames;
import io.distillery.model.llama.KvCache;
import io.distillery.model.llama.LlamaModel;
import io.distillery.model.quant.CompressedTensors;
import io.distillery.model.stream.TeacherForcedScorer;
import io.distillery.model.tasks.ExactMatch;
import io.distillery.model.tasks.TaskBatch;
import io.distillery.model.tasks.TaskExample;
import io.distillery.model.tokenizer.TextTokenizer;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Stream;

/**
 * Measures models on one fixed set of eval prompts, so every candidate and the reference are
 * compared on the same data with the same tokenizer: greedy exact match, teacher-forced perplexity,
 * top-1 agreement and KL against the reference, batch-1 prefill/decode latency, and size on disk.
 * Owns no model: the caller loads and closes them.
 */
public final class Evaluation {

  private final TextTokenizer tokenizer;
  private final List<TaskExample> examples;
  private final List<TaskExample> misfires;
  private final int batch;
  private final int latencyRuns;
  private final int decodeTokens;

  /**
   * @param examples eval prompts with their exact answers (at least one)
   * @param misfires held-out misfires with their expected answers (may be empty)
   */
  public Evaluation(
      TextTokenizer tokenizer,
      List<TaskExample> examples,
      List<TaskExample> misfires,
      int batch,
      int latencyRuns,
      int decodeTokens) {
    if (examples.isEmpty()) {
      throw new IllegalArgumentException("an evaluation needs at least one example");
    }
    this.tokenizer = tokenizer;
    this.examples = List.copyOf(examples);
    this.misfires = List.copyOf(misfires);
    this.batch = batch;
    this.latencyRuns = latencyRuns;
    this.decodeTokens = decodeTokens;
  }

  public List<TaskExample> examples() {
    return examples;
  }

  public List<TaskExample> misfires() {
    return misfires;
  }

  /**
   * Every metric of {@code model} against {@code reference} (pass the reference itself to measure
   * it).
   */
  public CandidateMetrics measure(
      String name, Path checkpoint, LlamaModel model, LlamaModel reference)
      throws IOException, InterruptedException {
    double exactMatch = exactMatch(model, tokenizer, examples);
    Scores scores = score(model, reference, tokenizer, examples, batch);
    Latency latency = time(model);
    double misfireExactMatch =
        misfires.isEmpty() ? Double.NaN : exactMatch(model, tokenizer, misfires);
    return new CandidateMetrics(
        name,
        exactMatch,
        scores.perplexity(),
        scores.agreement(),
        scores.klDivergence(),
        latency,
        weightBytes(checkpoint),
        parameters(model),
        misfireExactMatch,
        examples.size(),
        scores.tokens());
  }

  /**
   * Exact match on the held-out misfires only (for the deployed baseline); NaN without misfires.
   */
  public double misfireExactMatch(LlamaModel model) throws InterruptedException {
    return misfires.isEmpty() ? Double.NaN : exactMatch(model, tokenizer, misfires);
  }

  /**
   * Fraction of {@code examples} answered exactly (the platform's {@link ExactMatch} rule: greedy
   * after {@code <s> prompt}, up to eos, compared as text). Generation stops one token past the
   * answer's length: a longer output cannot match anyway.
   */
  public static double exactMatch(
      LlamaModel model, TextTokenizer tokenizer, List<TaskExample> examples)
      throws InterruptedException {
    if (examples.isEmpty()) {
      return Double.NaN;
    }
    int correct = 0;
    for (TaskExample example : examples) {
      if (Thread.interrupted()) {
        throw new InterruptedException("evaluation interrupted");
      }
      int answerTokens = tokenizer.encode(example.answer(), false, false).length;
      if (ExactMatch.answer(model, tokenizer, example.prompt(), answerTokens + 1)
          .equals(example.answer())) {
        correct++;
      }
    }
    return (double) correct / examples.size();
  }

  /** Teacher-forced answer scores of a model and its agreement with the reference. */
  record Scores(double nllSum, long tokens, long agreeing, double klSum) {
    double perplexity() {
      return Math.exp(nllSum / tokens);
    }

    double agreement() {
      return (double) agreeing / tokens;
    }

    double klDivergence() {
      return klSum / tokens;
    }
  }

  /**
   * One teacher-forced pass of both models per batch. Perplexity = exp(mean -log p(target)) over
   * answer positions; agreement = share of answer positions where argmax of both next-token
   * distributions is equal; KL(P_ref || P_cand) = sum_v p_ref(v) (log p_ref(v) - log p_cand(v)),
   * averaged over answer positions.
   */
  static Scores score(
      LlamaModel model,
      LlamaModel reference,
      TextTokenizer tokenizer,
      List<TaskExample> examples,
      int batchSize)
      throws InterruptedException {
    double nll = 0;
    double kl = 0;
    long tokens = 0;
    long agreeing = 0;
    for (int from = 0; from < examples.size(); from += batchSize) {
      if (Thread.interrupted()) {
        throw new InterruptedException("evaluation interrupted");
      }
      TaskBatch b =
          TaskBatch.of(
              examples.subList(from, Math.min(examples.size(), from + batchSize)), tokenizer);
      try (NDManager scope = model.manager().newSubManager()) {
        NDArray logProbs = model.forward(scope, b.inputs()).logSoftmax(-1);
        NDArray refLogProbs = reference.forward(scope, b.inputs()).logSoftmax(-1);
        int vocab = Math.toIntExact(logProbs.getShape().get(2));
        NDArray oneHot = scope.create(b.targets(), new Shape(b.size(), b.length())).oneHot(vocab);
        float[] targetLogProb = logProbs.mul(oneHot).sum(new int[] {-1}).toFloatArray();
        long[] top = logProbs.argMax(-1).toLongArray();
        long[] refTop = refLogProbs.argMax(-1).toLongArray();
        float[] klPerPosition =
            refLogProbs.exp().mul(refLogProbs.sub(logProbs)).sum(new int[] {-1}).toFloatArray();
        float[] mask = b.mask();
        for (int i = 0; i < mask.length; i++) {
          if (mask[i] > 0) {
            nll -= targetLogProb[i];
            kl += Math.max(0, klPerPosition[i]);
            agreeing += top[i] == refTop[i] ? 1 : 0;
            tokens++;
          }
        }
      }
    }
    if (tokens == 0) {
      throw new IllegalArgumentException("the eval examples have no answer tokens to score");
    }
    return new Scores(nll, tokens, agreeing, kl);
  }

  /**
   * The eval prompts then the held-out misfires as teacher-forced batches of {@code batch} rows
   * ({@link TaskBatch#of}: {@code <s> prompt answer </s>}, answer and stop positions scored), the
   * examples' batches first.
   */
  public List<TaskBatch> streamedBatches() {
    List<TaskBatch> out = new ArrayList<>();
    for (List<TaskExample> set : List.of(examples, misfires)) {
      for (int from = 0; from < set.size(); from += batch) {
        out.add(TaskBatch.of(set.subList(from, Math.min(set.size(), from + batch)), tokenizer));
      }
    }
    return out;
  }

  /**
   * One model's streamed teacher-forced scores over {@link #streamedBatches()}, with its KL from
   * {@code reference}'s next-token distributions when given.
   *
   * @param reference the reference's streamed scores, or null (for the reference itself)
   */
  public Streamed scoreStreamed(
      Path checkpoint,
      LlamaConfig config,
      Streamed reference,
      TeacherForcedScorer.Progress progress)
      throws IOException, InterruptedException {
    TeacherForcedScorer.Result result =
        new TeacherForcedScorer(checkpoint, config, TeacherForcedScorer.DEFAULT_HEAD_ROWS)
            .score(
                streamedBatches(),
                reference == null ? null : reference.result().asReference(),
                progress);
    return new Streamed(result, examples.size());
  }

  /**
   * Teacher-forced scores of one model, streamed: rows below {@code examples} are eval prompts, the
   * rest held-out misfires. Exact match per row is argmax-correct at every answer position and at
   * the stop, which is when greedy decoding returns exactly the answer (see /work/shared/SCALE.md).
   */
  public record Streamed(TeacherForcedScorer.Result result, int examples) {

    double exactMatch(boolean misfires) {
      boolean[] exact = result.exact();
      int from = misfires ? examples : 0;
      int to = misfires ? exact.length : examples;
      if (to <= from) {
        return Double.NaN;
      }
      int correct = 0;
      for (int i = from; i < to; i++) {
        correct += exact[i] ? 1 : 0;
      }
      return (double) correct / (to - from);
    }

    /** Scored answer positions of the eval prompts, and exp(mean NLL) over them. */
    long answerTokens() {
      long n = 0;
      for (int s : result.sequence()) {
        n += s < examples ? 1 : 0;
      }
      return n;
    }

    double perplexity() {
      double nll = 0;
      for (int i = 0; i < result.sequence().length; i++) {
        if (result.sequence()[i] < examples) {
          nll -= result.logProb()[i];
        }
      }
      return Math.exp(nll / answerTokens());
    }

    /**
     * Mean KL(reference || this) over the eval prompts' answer positions; 0 for the reference
     * itself.
     */
    double klDivergence(Streamed reference) {
      double[] kl = result.klFromReference();
      if (kl == null) {
        return reference == this ? 0.0 : Double.NaN;
      }
      double sum = 0;
      for (int i = 0; i < kl.length; i++) {
        if (result.sequence()[i] < examples) {
          sum += kl[i];
        }
      }
      return sum / answerTokens();
    }

    /**
     * Share of the eval prompts' answer positions where this model's argmax equals {@code
     * reference}'s.
     */
    double agreement(Streamed reference) {
      if (reference.result.argmax().length != result.argmax().length) {
        throw new IllegalStateException(
            "the reference and the candidate were scored on different positions");
      }
      long agreeing = 0;
      for (int i = 0; i < result.sequence().length; i++) {
        if (result.sequence()[i] < examples && result.argmax()[i] == reference.result.argmax()[i]) {
          agreeing++;
        }
      }
      return (double) agreeing / answerTokens();
    }
  }

  /**
   * The metrics of a streamed evaluation: exact match (teacher-forced), perplexity, agreement with
   * the reference's argmax, KL from the reference and misfire exact match; latency is not measured
   * (NaN).
   */
  public CandidateMetrics streamedMetrics(
      String name, Path checkpoint, LlamaConfig config, Streamed own, Streamed reference)
      throws IOException {
    if (own.answerTokens() == 0) {
      throw new IllegalArgumentException("the eval examples have no answer tokens to score");
    }
    long parameters = LlamaTensorNames.parameterCount(config);
    return new CandidateMetrics(
        name,
        own.exactMatch(false),
        own.perplexity(),
        own.agreement(reference),
        own.klDivergence(reference),
        Latency.NOT_MEASURED,
        weightBytes(checkpoint),
        parameters,
        own.exactMatch(true),
        examples.size(),
        own.answerTokens());
  }

  /**
   * Batch-1 latency: one untimed warm-up, then {@code latencyRuns} prompts (cycling through the
   * eval prompts), each a timed prefill into a fresh KV cache followed by {@code decodeTokens}
   * timed single-token steps (greedy).
   */
  Latency time(LlamaModel model) throws InterruptedException {
    int runs = latencyRuns;
    double[] prefill = new double[runs];
    double[] decode = new double[runs * decodeTokens];
    long prefillTokens = 0;
    double prefillSeconds = 0;
    double decodeSeconds = 0;
    oneRun(model, tokenizer.encode(examples.getFirst().prompt(), true, false), null, null, 0);
    for (int r = 0; r < runs; r++) {
      if (Thread.interrupted()) {
        throw new InterruptedException("evaluation interrupted");
      }
      int[] prompt = tokenizer.encode(examples.get(r % examples.size()).prompt(), true, false);
      oneRun(model, prompt, prefill, decode, r);
      prefillTokens += prompt.length;
      prefillSeconds += prefill[r] / 1000;
    }
    for (double d : decode) {
      decodeSeconds += d / 1000;
    }
    return new Latency(
        Latency.percentile(prefill, 50),
        Latency.percentile(prefill, 99),
        Latency.percentile(decode, 50),
        Latency.percentile(decode, 99),
        prefillTokens / prefillSeconds,
        decode.length / decodeSeconds);
  }

  /**
   * Prefill then decode; records milliseconds into {@code prefill[run]} and {@code decode[run *
   * decodeTokens + i]}.
   */
  private void oneRun(LlamaModel model, int[] prompt, double[] prefill, double[] decode, int run) {
    try (NDManager scope = model.manager().newSubManager();
        KvCache cache = model.newKvCache()) {
      long start = System.nanoTime();
      int next = lastArgMax(model.forward(scope, new int[][] {prompt}, cache));
      if (prefill != null) {
        prefill[run] = (System.nanoTime() - start) / 1e6;
      }
      for (int i = 0; i < decodeTokens; i++) {
        long step = System.nanoTime();
        try (NDManager stepScope = scope.newSubManager()) {
          next = lastArgMax(model.forward(stepScope, new int[][] {{next}}, cache));
        }
        if (decode != null) {
          decode[run * decodeTokens + i] = (System.nanoTime() - step) / 1e6;
        }
      }
    }
  }

  private static int lastArgMax(NDArray logits) {
    long positions = logits.getShape().get(1);
    try (NDArray last = logits.get(0, positions - 1)) {
      return (int) last.argMax().getLong();
    }
  }

  /**
   * Loads a checkpoint directory into a float model: compressed-tensors ones are dequantized on
   * load.
   */
  public static LlamaModel load(Path dir) throws IOException {
    if (!Files.isDirectory(dir)) {
      throw new CorruptCheckpointException(dir, "is not a checkpoint directory");
    }
    if (!Files.isRegularFile(dir.resolve(LlamaConfig.FILE_NAME))) {
      throw new CorruptCheckpointException(dir, "has no " + LlamaConfig.FILE_NAME);
    }
    return CompressedTensors.loadAny(dir);
  }

  /** Bytes of the weight files ({@code *.safetensors}, {@code *.bin}) of a checkpoint directory. */
  public static long weightBytes(Path dir) throws IOException {
    try (Stream<Path> files = Files.walk(dir)) {
      long total = 0;
      for (Path f : files.filter(Files::isRegularFile).toList()) {
        String name = f.getFileName().toString();
        if (name.endsWith(".safetensors") || name.endsWith(".bin")) {
          total += Files.size(f);
        }
      }
      return total;
    }
  }

  public static long parameters(LlamaModel model) {
    long n = 0;
    for (NDArray a : model.parameters().values()) {
      n += a.size();
    }
    return n;
  }
}
