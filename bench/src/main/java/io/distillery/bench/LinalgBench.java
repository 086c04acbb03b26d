package io.distillery.bench;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import ai.djl.pytorch.jni.JniUtils;
import io.distillery.model.calib.StatsAccumulator;
import io.distillery.model.linalg.HessianInverse;
import io.distillery.model.quant.GroupQuantizer;
import io.distillery.quantizer.gptq.Gptq;
import java.util.Arrays;
import java.util.HashMap;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.SplittableRandom;
import java.util.stream.IntStream;

/**
 * bench/linalg: the linear algebra under GPTQ and SparseGPT (issue 16, "Speed") on DJL's native
 * engine against the scalar Java code it replaced, on the same machine in the same run: the upper
 * Cholesky factor of the dampened H^-1 at real widths, GPTQ on a real-sized layer (default 5632 x
 * 2048, Llama-3.2-1B's up_proj transposed shape class), and X^T X accumulation. Each is reported as
 * seconds, GFLOP/s and a fraction of DJL's raw float32 matmul rate ({@code n x n @ n x n} at n =
 * 2048). FLOP counts: X^T X 2 t n^2; GPTQ 2 rows cols^2 + cols^3 / 3 (SCALE.md); the inverse 2 n^3
 * / 3 (Cholesky plus triangular inverse).
 *
 * <p>The "old" GPTQ is the pre-DJL implementation reproduced here (scalar inverse, rows in
 * parallel, each row's lazy update a Java loop); its codes are compared with the new ones.
 */
public final class LinalgBench {

  private static final int MATMUL = 2048;
  private static final double DAMP = 0.01;
  private static final int GROUP = 128;

  private LinalgBench() {}

  public static void main(String[] args) {
    Map<String, String> o = new HashMap<>();
    for (int i = 0; i + 1 < args.length; i += 2) {
      if (!args[i].startsWith("--")) {
        throw new IllegalArgumentException("expected --name value, got " + args[i]);
      }
      o.put(args[i].substring(2), args[i + 1]);
    }
    int oldMax = Integer.parseInt(o.getOrDefault("old-max", "2048"));
    int[] sizes =
        Arrays.stream(o.getOrDefault("sizes", "2048,5632,8192").split(","))
            .mapToInt(Integer::parseInt)
            .toArray();
    int rows = Integer.parseInt(o.getOrDefault("rows", "5632"));
    int cols = Integer.parseInt(o.getOrDefault("cols", "2048"));
    int tokens = Integer.parseInt(o.getOrDefault("tokens", "4096"));
    boolean oldGptq = Boolean.parseBoolean(o.getOrDefault("old-gptq", "true"));
    Engine engine = Engine.getEngine("PyTorch");
    System.out.printf(
        Locale.ROOT,
        "engine=%s %s threads=%d cores=%d%n",
        engine.getEngineName(),
        engine.getVersion(),
        JniUtils.getNumThreads(),
        Runtime.getRuntime().availableProcessors());

    double f32 = matmulGflops(engine, DataType.FLOAT32);
    double f64 = matmulGflops(engine, DataType.FLOAT64);
    System.out.printf(
        Locale.ROOT,
        "matmul %d^3 float32 %.1f GFLOP/s, float64 %.1f GFLOP/s (%.2f of f32)%n",
        MATMUL,
        f32,
        f64,
        f64 / f32);

    // the inverse, old vs new
    double oldAtFirst = Double.NaN;
    int firstOld = 0;
    double speedupAt2048 = Double.NaN;
    double newAtLargest = Double.NaN;
    HessianInverse.upperCholeskyOfInverse(
        HessianInverse.narrowed(spd(300, 1)), 300, DAMP); // warm the engine
    for (int n : sizes) {
      double[] h = spd(n, n);
      double f32Here = matmulGflops(engine, DataType.FLOAT32);
      long t0 = System.nanoTime();
      float[] u = HessianInverse.upperCholeskyOfInverse(HessianInverse.narrowed(h), n, DAMP);
      double fresh = (System.nanoTime() - t0) / 1e9;
      String oldText;
      double old;
      if (n <= oldMax) {
        t0 = System.nanoTime();
        double[] reference = HessianInverse.upperCholeskyOfInverseScalar(h, n, DAMP);
        old = (System.nanoTime() - t0) / 1e9;
        oldText =
            String.format(
                Locale.ROOT, "old %.2f s, max rel diff %.1e", old, maxRelDiff(u, reference));
        if (firstOld == 0) {
          firstOld = n;
          oldAtFirst = old;
        }
      } else {
        old = firstOld == 0 ? Double.NaN : oldAtFirst * Math.pow((double) n / firstOld, 3);
        oldText = String.format(Locale.ROOT, "old %.0f s est (cubic from %d)", old, firstOld);
      }
      double flops = 2.0 * n * n * n / 3;
      System.out.printf(
          Locale.ROOT,
          "cholinv n=%d: new %.2f s (%.1f GFLOP/s, %.2f of the f32 matmul rate %.1f just "
              + "before), %s, speedup %.1fx%n",
          n,
          fresh,
          flops / fresh / 1e9,
          flops / fresh / 1e9 / f32Here,
          f32Here,
          oldText,
          old / fresh);
      if (n == 2048) {
        speedupAt2048 = old / fresh;
      }
      newAtLargest = fresh;
    }

    // GPTQ on a real-sized layer
    double[] hessian = hessian(cols, 4 * cols, 5);
    float[] weight = new float[rows * cols];
    SplittableRandom random = new SplittableRandom(6);
    for (int i = 0; i < weight.length; i++) {
      weight[i] = (float) (random.nextGaussian() * 0.02);
    }
    double f32Gptq = matmulGflops(engine, DataType.FLOAT32);
    long t0 = System.nanoTime();
    int[] fresh = Gptq.quantize(weight, rows, cols, hessian, GROUP, DAMP, false).codes();
    double gptqNew = (System.nanoTime() - t0) / 1e9;
    double gptqOld = Double.NaN;
    int same = 0;
    if (oldGptq) {
      t0 = System.nanoTime();
      int[] old = legacyGptq(weight, rows, cols, hessian);
      gptqOld = (System.nanoTime() - t0) / 1e9;
      for (int i = 0; i < old.length; i++) {
        same += old[i] == fresh[i] ? 1 : 0;
      }
    }
    double gptqFlops = 2.0 * rows * cols * cols + (double) cols * cols * cols / 3;
    double gptqEfficiency = gptqFlops / gptqNew / 1e9 / f32Gptq;
    System.out.printf(
        Locale.ROOT,
        "gptq %dx%d g%d: new %.2f s (%.1f GFLOP/s, %.2f of the f32 matmul rate %.1f just "
            + "before), old %.2f s, speedup %.1fx, identical codes %.6f%n",
        rows,
        cols,
        GROUP,
        gptqNew,
        gptqFlops / gptqNew / 1e9,
        gptqEfficiency,
        f32Gptq,
        gptqOld,
        gptqOld / gptqNew,
        (double) same / fresh.length);

    // X^T X accumulation
    float[] x = new float[tokens * cols];
    for (int i = 0; i < x.length; i++) {
      x[i] = (float) random.nextGaussian();
    }
    StatsAccumulator warm = new StatsAccumulator(64, 1f, Set.of("l"), false);
    warm.add("l", Arrays.copyOf(x, 1024 * cols), cols);
    StatsAccumulator acc = new StatsAccumulator(2048, 1f, Set.of("l"), false);
    double f32Gram = matmulGflops(engine, DataType.FLOAT32);
    t0 = System.nanoTime();
    acc.add("l", x, cols);
    double gramNew = (System.nanoTime() - t0) / 1e9;
    int oldTokens = Math.min(tokens, 256);
    double[] gram = new double[cols * cols];
    t0 = System.nanoTime();
    legacyGram(gram, x, oldTokens, cols);
    double gramOld = (System.nanoTime() - t0) / 1e9 * tokens / oldTokens;
    double gramFlops = 2.0 * tokens * cols * cols;
    double hessianEfficiency = gramFlops / gramNew / 1e9 / f32Gram;
    System.out.printf(
        Locale.ROOT,
        "hessian X^T X %d tokens x %d: new %.2f s (%.1f GFLOP/s, %.2f of the f32 matmul "
            + "rate %.1f just before; with the histogram and sums), old %.2f s (scalar loop, timed on %d tokens), "
            + "speedup %.1fx%n",
        tokens,
        cols,
        gramNew,
        gramFlops / gramNew / 1e9,
        hessianEfficiency,
        f32Gram,
        gramOld,
        oldTokens,
        gramOld / gramNew);

    System.out.printf(
        Locale.ROOT,
        "linalg matmul_gflops=%.1f cholinv_speedup_2048=%.1f cholinv_new_s_%d=%.2f "
            + "gptq_old_s=%.2f gptq_new_s=%.2f gptq_speedup=%.1f hessian_efficiency=%.2f gptq_efficiency=%.2f%n",
        f32,
        speedupAt2048,
        sizes[sizes.length - 1],
        newAtLargest,
        gptqOld,
        gptqNew,
        gptqOld / gptqNew,
        hessianEfficiency,
        gptqEfficiency);
  }

  private static double matmulGflops(Engine engine, DataType type) {
    try (NDManager manager = engine.newBaseManager()) {
      NDArray a = manager.randomNormal(new Shape(MATMUL, MATMUL)).toType(type, false);
      NDArray b = manager.randomNormal(new Shape(MATMUL, MATMUL)).toType(type, false);
      a.matMul(b).close();
      int reps = 0;
      long start = System.nanoTime();
      do {
        a.matMul(b).close();
        reps++;
      } while (System.nanoTime() - start < 1_500_000_000L);
      double seconds = (System.nanoTime() - start) / 1e9;
      return 2.0 * MATMUL * MATMUL * MATMUL * reps / seconds / 1e9;
    }
  }

  /**
   * A Hessian-like SPD matrix: 2 X^T X / t of t = 2n correlated random inputs, computed on the
   * engine.
   */
  private static double[] spd(int n, long seed) {
    return hessian(n, 2 * n, seed);
  }

  private static double[] hessian(int n, int t, long seed) {
    SplittableRandom random = new SplittableRandom(seed);
    float[] x = new float[t * n];
    for (int r = 0; r < t; r++) {
      double common = random.nextGaussian();
      for (int j = 0; j < n; j++) {
        x[r * n + j] = (float) (random.nextGaussian() * (j % 64 == 0 ? 20 : 1) + 0.5 * common);
      }
    }
    try (NDManager manager = Engine.getEngine("PyTorch").newBaseManager()) {
      NDArray xs = manager.create(x, new Shape(t, n)).toType(DataType.FLOAT64, false);
      return xs.transpose().matMul(xs).mul(2.0 / t).toDoubleArray();
    }
  }

  private static double maxRelDiff(float[] a, double[] b) {
    double diff = 0;
    double norm = 0;
    for (int i = 0; i < a.length; i++) {
      diff = Math.max(diff, Math.abs(a[i] - b[i]));
      norm = Math.max(norm, Math.abs(b[i]));
    }
    return diff / norm;
  }

  /** The pre-DJL X^T X: upper triangle, scalar double loop (StatsAccumulator before issue 16). */
  private static void legacyGram(double[] gram, float[] x, int rows, int n) {
    for (int r = 0; r < rows; r++) {
      int o = r * n;
      for (int i = 0; i < n; i++) {
        double xi = x[o + i];
        int gi = i * n;
        for (int j = i; j < n; j++) {
          gram[gi + j] += xi * x[o + j];
        }
      }
    }
  }

  /**
   * The pre-DJL GPTQ (no act-order): scalar inverse, rows in parallel, lazy updates as Java loops
   * per row.
   */
  private static int[] legacyGptq(float[] weight, int rows, int cols, double[] hessian) {
    double[] u = HessianInverse.upperCholeskyOfInverseScalar(hessian, cols, DAMP);
    int block = 128;
    int[] codes = new int[rows * cols];
    IntStream.range(0, rows)
        .parallel()
        .forEach(
            r -> {
              double[] w = new double[cols];
              for (int j = 0; j < cols; j++) {
                w[j] = weight[r * cols + j];
              }
              double[] err = new double[block];
              float[] slice = new float[GROUP];
              GroupQuantizer.Grid grid = null;
              for (int b0 = 0; b0 < cols; b0 += block) {
                int b1 = Math.min(b0 + block, cols);
                for (int k = b0; k < b1; k++) {
                  if (k % GROUP == 0) {
                    for (int i = 0; i < GROUP; i++) {
                      slice[i] = (float) w[k + i];
                    }
                    grid = GroupQuantizer.Grid.int4(slice, 0, GROUP);
                  }
                  float v = (float) w[k];
                  int q = grid.quantize(v);
                  codes[r * cols + k] = q;
                  double e = (v - grid.dequantize(q)) / u[k * cols + k];
                  err[k - b0] = e;
                  for (int j = k + 1; j < b1; j++) {
                    w[j] -= e * u[k * cols + j];
                  }
                }
                for (int k = b0; k < b1; k++) {
                  for (int j = b1; j < cols; j++) {
                    w[j] -= err[k - b0] * u[k * cols + j];
                  }
                }
              }
            });
    return codes;
  }
}
