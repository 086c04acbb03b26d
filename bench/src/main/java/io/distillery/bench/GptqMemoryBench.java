package io.distillery.bench;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import io.distillery.model.quant.QuantizedWeight;
import io.distillery.quantizer.gptq.Gptq;
import java.util.HashMap;
import java.util.Locale;
import java.util.Map;
import java.util.SplittableRandom;

/**
 * bench/gptqmem: the working memory of one GPTQ solve at Llama-3.2-1B's widest shape (down_proj,
 * 2048 x 8192, an 8192 x 8192 Hessian), which sets the streamed quantizer's peak (issue 16,
 * MemoryPlan.GPTQ_WORKING_COPIES). A random weight and a random SPD Hessian (2 X^T X / t from t
 * random tokens) are built first, the Hessian in float32 as the streamed quantizer takes it from
 * its accumulator; then RssAnon is sampled every 20 ms while {@link Gptq#quantizeConsuming} runs on
 * it, and reported before (the Hessian and the weight included), at its peak and after, also as n x
 * n float arrays beyond "before".
 *
 * <p>Last line: gptqmem rows=R cols=C before_gb=X peak_gb=X after_gb=X working_copies=X seconds=X
 */
public final class GptqMemoryBench {

  private GptqMemoryBench() {}

  public static void main(String[] args) throws InterruptedException {
    Map<String, String> o = new HashMap<>();
    for (int i = 0; i + 1 < args.length; i += 2) {
      if (!args[i].startsWith("--")) {
        throw new IllegalArgumentException("expected --name value, got " + args[i]);
      }
      o.put(args[i].substring(2), args[i + 1]);
    }
    int rows = Integer.parseInt(o.getOrDefault("rows", "2048"));
    int cols = Integer.parseInt(o.getOrDefault("cols", "8192"));
    int tokens = Integer.parseInt(o.getOrDefault("tokens", "1024"));
    SplittableRandom random = new SplittableRandom(16);
    float[] weight = new float[rows * cols];
    for (int i = 0; i < weight.length; i++) {
      weight[i] = (float) random.nextGaussian() * 0.02f;
    }
    float[] hessian;
    try (NDManager manager = Engine.getEngine("PyTorch").newBaseManager()) {
      float[] x = new float[tokens * cols];
      for (int i = 0; i < x.length; i++) {
        x[i] = (float) random.nextGaussian();
      }
      NDArray xs = manager.create(x, new Shape(tokens, cols));
      hessian = xs.transpose().matMul(xs).mul(2.0f / tokens).toFloatArray();
    }
    System.gc();
    ScaleBench.RssSampler rss = new ScaleBench.RssSampler();
    rss.start();
    rss.reset();
    long before = rss.peakAnon();
    rss.reset();
    long t0 = System.nanoTime();
    QuantizedWeight q =
        Gptq.quantizeConsuming(weight, rows, cols, hessian, 128, 0.01, false, 4, false);
    double seconds = (System.nanoTime() - t0) / 1e9;
    long peak = rss.peakAnon();
    rss.reset();
    long after = rss.peakAnon();
    rss.stop();
    long checksum = 0;
    for (int c : q.codes()) {
      checksum = checksum * 31 + c;
    }
    double nn = (double) cols * cols * 4;
    System.out.printf(
        Locale.ROOT,
        "GPTQ %d x %d (H %d x %d, one n x n float = %.2f GB), codes checksum %d%n",
        rows,
        cols,
        cols,
        cols,
        nn / 1e9,
        checksum);
    System.out.printf(
        Locale.ROOT,
        "gptqmem rows=%d cols=%d before_gb=%.2f peak_gb=%.2f after_gb=%.2f"
            + " working_copies=%.1f seconds=%.1f%n",
        rows,
        cols,
        before / 1e9,
        peak / 1e9,
        after / 1e9,
        (peak - before) / nn,
        seconds);
  }
}
