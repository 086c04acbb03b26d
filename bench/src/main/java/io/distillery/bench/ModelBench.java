package io.distillery.bench;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import ai.djl.pytorch.jni.JniUtils;
import io.distillery.model.llama.LlamaModel;
import io.distillery.model.llama.SamplingParams;
import io.distillery.model.train.TeacherConfig;
import io.distillery.model.train.TeacherReport;
import io.distillery.model.train.TeacherTrainer;
import io.distillery.model.train.TrainedTeacher;
import java.util.Locale;
import java.util.SplittableRandom;

/**
 * bench/model: how close the Llama forward, KV-cached decode and training loop come to the raw
 * matmul throughput of the same engine on the same machine. The baseline is a 512x512 by 512x512
 * float32 matmul (2 * 512^3 FLOPs); the model is the teacher-sized random Llama (4 layers, hidden
 * 256, MLP 768, ~3.5M parameters), counted at 2 * params FLOPs per token forward and 6 * params per
 * token trained (Kaplan et al., arXiv 2001.08361, section 2.1; attention FLOPs ignored at these
 * lengths).
 *
 * <p>Args: [SECONDS_PER_MEASUREMENT (default 3)] [THREADS (default: engine's)].
 */
public final class ModelBench {

  private static final int MATMUL = 512;
  private static final int PREFILL_BATCH = 8;
  private static final int PREFILL_SEQ = 64;
  private static final int DECODE_PROMPT = 16;
  private static final int DECODE_TOKENS = 64;

  private ModelBench() {}

  public static void main(String[] args) {
    double seconds = args.length > 0 ? Double.parseDouble(args[0]) : 3.0;
    int threads = args.length > 1 ? Integer.parseInt(args[1]) : 0;
    Engine engine = Engine.getEngine("PyTorch");
    if (threads > 0) {
      JniUtils.setNumThreads(threads);
    }
    System.out.printf(
        Locale.ROOT,
        "engine=%s %s threads=%d cores=%d%n",
        engine.getEngineName(),
        engine.getVersion(),
        JniUtils.getNumThreads(),
        Runtime.getRuntime().availableProcessors());

    TeacherConfig teacher = TeacherConfig.teacher().threads(threads).build();
    try (NDManager manager = engine.newBaseManager()) {
      double gflops = matmulGflops(manager, seconds);
      System.out.printf(
          Locale.ROOT,
          "matmul %dx%d@%dx%d: %.2f GFLOP/s%n",
          MATMUL,
          MATMUL,
          MATMUL,
          MATMUL,
          gflops);

      try (LlamaModel model = LlamaModel.random(teacher.modelConfig(), 7, manager)) {
        long params = model.parameters().values().stream().mapToLong(NDArray::size).sum();
        System.out.printf(
            Locale.ROOT,
            "model layers=%d hidden=%d params=%d%n",
            teacher.layers(),
            teacher.hidden(),
            params);

        double prefill = prefillTokensPerSecond(model, manager, seconds);
        report(
            "prefill",
            prefill,
            2.0 * params,
            gflops,
            "batch " + PREFILL_BATCH + " x " + PREFILL_SEQ + " tokens, full forward");
        double decode = decodeTokensPerSecond(model, seconds);
        report(
            "decode",
            decode,
            2.0 * params,
            gflops,
            "batch 1, KV cache, "
                + DECODE_TOKENS
                + " tokens after a "
                + DECODE_PROMPT
                + "-token prompt");

        double train = trainTokensPerSecond(teacher, seconds);
        report(
            "train", train, 6.0 * params, gflops, "batch 64 task sequences, AdamW step included");

        System.out.printf(
            Locale.ROOT,
            "decode/prefill=%.3f train/prefill=%.3f%n",
            decode / prefill,
            train / prefill);
        System.out.printf(
            Locale.ROOT,
            "model matmul_gflops=%.2f prefill_tok_s=%.0f decode_tok_s=%.0f train_tok_s=%.0f%n",
            gflops,
            prefill,
            decode,
            train);
      }
    }
  }

  private static void report(
      String name, double tokensPerSecond, double flopsPerToken, double matmulGflops, String what) {
    double achieved = tokensPerSecond * flopsPerToken / 1e9;
    System.out.printf(
        Locale.ROOT,
        "%-8s %10.0f tok/s  %7.2f GFLOP/s  %.3f of matmul  (%s)%n",
        name,
        tokensPerSecond,
        achieved,
        achieved / matmulGflops,
        what);
  }

  private static double matmulGflops(NDManager manager, double seconds) {
    try (NDManager scope = manager.newSubManager()) {
      NDArray a = scope.randomNormal(new Shape(MATMUL, MATMUL));
      NDArray b = scope.randomNormal(new Shape(MATMUL, MATMUL));
      for (int i = 0; i < 5; i++) {
        a.matMul(b).close();
      }
      long count = 0;
      long start = System.nanoTime();
      long deadline = start + (long) (seconds * 1e9);
      do {
        a.matMul(b).close();
        count++;
      } while (System.nanoTime() < deadline);
      double elapsed = (System.nanoTime() - start) / 1e9;
      return 2.0 * MATMUL * MATMUL * MATMUL * count / elapsed / 1e9;
    }
  }

  private static double prefillTokensPerSecond(
      LlamaModel model, NDManager manager, double seconds) {
    int[][] ids = new int[PREFILL_BATCH][PREFILL_SEQ];
    SplittableRandom random = new SplittableRandom(3);
    for (int[] row : ids) {
      for (int s = 0; s < row.length; s++) {
        row[s] = random.nextInt(256);
      }
    }
    for (int i = 0; i < 2; i++) {
      try (NDManager scope = manager.newSubManager()) {
        model.forward(scope, ids);
      }
    }
    long tokens = 0;
    long start = System.nanoTime();
    long deadline = start + (long) (seconds * 1e9);
    do {
      try (NDManager scope = manager.newSubManager()) {
        model.forward(scope, ids);
      }
      tokens += (long) PREFILL_BATCH * PREFILL_SEQ;
    } while (System.nanoTime() < deadline);
    return tokens / ((System.nanoTime() - start) / 1e9);
  }

  private static double decodeTokensPerSecond(LlamaModel model, double seconds) {
    int[] prompt = new int[DECODE_PROMPT];
    for (int i = 0; i < prompt.length; i++) {
      prompt[i] = 'a' + i;
    }
    model.generate(prompt, 8, SamplingParams.greedy(), -1);
    // decode time = time(prompt + 64 tokens) - time(prompt + 1 token): the prompt's forward pass is
    // prefill
    long tokens = 0;
    long decodeNanos = 0;
    long deadline = System.nanoTime() + (long) (seconds * 1e9);
    do {
      long t0 = System.nanoTime();
      model.generate(prompt, 1, SamplingParams.greedy(), -1);
      long t1 = System.nanoTime();
      int generated = model.generate(prompt, DECODE_TOKENS, SamplingParams.greedy(), -1).length;
      long t2 = System.nanoTime();
      decodeNanos += (t2 - t1) - (t1 - t0);
      tokens += generated - 1;
    } while (System.nanoTime() < deadline);
    return tokens / (decodeNanos / 1e9);
  }

  private static double trainTokensPerSecond(TeacherConfig teacher, double seconds) {
    // ~0.3 s per step on two idle cores: enough steps to fill the measurement window
    int steps = Math.max(5, (int) Math.ceil(seconds / 0.3));
    TeacherConfig config =
        teacher.toBuilder()
            .steps(steps)
            .warmupSteps(1)
            .trainExamples(2000)
            .validationExamples(0)
            .testExamples(5)
            .build();
    TeacherTrainer trainer = new TeacherTrainer(config, progress -> {});
    try (TrainedTeacher trained = trainer.train(trainer.suite(), null)) {
      TeacherReport report = trained.report();
      return report.trainTokensPerSecond();
    }
  }
}
