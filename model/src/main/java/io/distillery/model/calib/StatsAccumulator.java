package io.distillery.model.calib;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Set;
import java.util.stream.IntStream;

/**
 * Accumulates {@link LayerStats} from linear-layer inputs, batch by batch (feed it from {@code
 * LlamaModel.observeLinearInputs}). The histogram range is fixed by the first batch's max |x| times
 * {@code histHeadroom}. Modules that read the same input tensor (q/k/v, gate/up) can {@link #share}
 * one module's accumulation, so the sums and X^T X are computed once but reported under every
 * module name.
 */
public final class StatsAccumulator {

  /** Rows of X per native product (bounds the copy of a large batch). */
  static final int GRAM_CHUNK = 4096;

  /** Below this many multiply-adds X^T X is accumulated in Java. */
  static final long GRAM_NATIVE_MIN_MACS = 1L << 22;

  private static final String ENGINE = "PyTorch";

  private final int bins;
  private final float histHeadroom;
  private final Set<String> withGram;
  private final boolean allGram;
  private final Map<String, State> states = new LinkedHashMap<>();

  /**
   * Every module name, in the order first seen, to its state (an alias points at the state of the
   * module shared).
   */
  private final Map<String, State> names = new LinkedHashMap<>();

  /**
   * @param bins histogram bins (2048 for TensorRT-style entropy calibration)
   * @param withGram modules that need X^T X (GPTQ, SparseGPT); empty with {@code allGram} = every
   *     module
   */
  public StatsAccumulator(int bins, float histHeadroom, Set<String> withGram, boolean allGram) {
    this.bins = bins;
    this.histHeadroom = histHeadroom;
    this.withGram = Set.copyOf(withGram);
    this.allGram = allGram;
  }

  /** Adds {@code rows x n} input rows (row-major) of {@code module}. */
  public void add(String module, float[] x, int n) {
    if (x.length % n != 0) {
      throw new IllegalArgumentException(module + ": " + x.length + " values are not rows of " + n);
    }
    int rows = x.length / n;
    State s = states.get(module);
    if (s == null) {
      if (names.containsKey(module)) {
        throw new IllegalStateException(
            module
                + " shares the statistics of "
                + names.get(module).module
                + "; it cannot also be fed its own inputs");
      }
      s =
          new State(
              module, n, allGram || withGram.contains(module), bins, firstMax(x) * histHeadroom);
      states.put(module, s);
      names.put(module, s);
    }
    if (s.n != n) {
      throw new IllegalArgumentException(module + ": width changed from " + s.n + " to " + n);
    }
    for (int r = 0; r < rows; r++) {
      int o = r * n;
      for (int j = 0; j < n; j++) {
        float v = x[o + j];
        float a = Math.abs(v);
        if (a > s.absMax[j]) {
          s.absMax[j] = a;
        }
        s.sumAbs[j] += a;
        s.sumSq[j] += (double) v * v;
        int bin = s.histMax <= 0 ? 0 : (int) Math.min(bins - 1, (long) (a / s.histMax * bins));
        s.histogram[bin]++;
      }
    }
    if (s.gram != null) {
      addGram(s.gram, x, rows, n);
    }
    s.tokens += rows;
  }

  /**
   * gram += X^T X for {@code rows x n} inputs X. Large batches are float32 matrix products on DJL's
   * native engine (multi-threaded BLAS; float32 as the GPTQ and SparseGPT reference code
   * accumulate), {@value #GRAM_CHUNK} rows at a time, added to the float64 sum; small ones, where
   * the copy would cost more than the product, run in Java (upper triangle only, as {@link #result}
   * mirrors it).
   */
  static void addGram(double[] gram, float[] x, int rows, int n) {
    if ((long) rows * n * n < GRAM_NATIVE_MIN_MACS) {
      for (int r = 0; r < rows; r++) {
        int o = r * n;
        for (int i = 0; i < n; i++) {
          double xi = x[o + i];
          if (xi == 0) {
            continue;
          }
          int gi = i * n;
          for (int j = i; j < n; j++) {
            gram[gi + j] += xi * x[o + j];
          }
        }
      }
      return;
    }
    float[] product;
    try (NDManager manager = Engine.getEngine(ENGINE).newBaseManager()) {
      NDArray sum = null;
      for (int r0 = 0; r0 < rows; r0 += GRAM_CHUNK) {
        int r1 = Math.min(rows, r0 + GRAM_CHUNK);
        float[] chunk = r0 == 0 && r1 == rows ? x : Arrays.copyOfRange(x, r0 * n, r1 * n);
        NDArray xs = manager.create(chunk, new Shape(r1 - r0, n));
        NDArray xt = xs.transpose();
        NDArray g = xt.matMul(xs);
        xt.close();
        xs.close();
        if (sum == null) {
          sum = g;
        } else {
          sum.addi(g);
          g.close();
        }
      }
      product = sum.toFloatArray();
    }
    float[] p = product;
    IntStream.range(0, n)
        .parallel()
        .forEach(
            i -> {
              int gi = i * n;
              for (int j = i; j < n; j++) {
                gram[gi + j] += p[gi + j];
              }
            });
  }

  /**
   * Records that {@code module} reads exactly the input already fed under {@code source} (e.g.
   * k_proj and v_proj read q_proj's input): its statistics are source's, now and for every later
   * batch. Idempotent.
   *
   * @throws IllegalStateException if {@code source} was never fed, or {@code module} has inputs of
   *     its own
   */
  public void share(String module, String source) {
    State s = states.get(source);
    if (s == null) {
      throw new IllegalStateException(
          module + " cannot share the statistics of " + source + ": none were fed");
    }
    if (states.containsKey(module)) {
      throw new IllegalStateException(
          module + " was fed its own inputs; it cannot share those of " + source);
    }
    State previous = names.putIfAbsent(module, s);
    if (previous != null && previous != s) {
      throw new IllegalStateException(
          module + " already shares the statistics of " + previous.module + ", not " + source);
    }
    if (s.gram == null && withGram.contains(module)) {
      throw new IllegalStateException(
          module + " needs X^T X but " + source + " does not collect it");
    }
  }

  public CalibrationStats result(Map<String, String> metadata) {
    Map<String, LayerStats> out = new LinkedHashMap<>();
    for (Map.Entry<String, State> entry : names.entrySet()) {
      State s = entry.getValue();
      double[] gram = null;
      if (s.gram != null) {
        gram = s.gram.clone();
        for (int i = 0; i < s.n; i++) {
          for (int j = 0; j < i; j++) {
            gram[i * s.n + j] = gram[j * s.n + i]; // only the upper triangle was accumulated
          }
        }
      }
      float[] sumAbs = new float[s.n];
      float[] sumSq = new float[s.n];
      for (int j = 0; j < s.n; j++) {
        sumAbs[j] = (float) s.sumAbs[j];
        sumSq[j] = (float) s.sumSq[j];
      }
      out.put(
          entry.getKey(),
          new LayerStats(
              entry.getKey(),
              s.n,
              s.tokens,
              s.absMax.clone(),
              sumAbs,
              sumSq,
              gram,
              s.histogram.clone(),
              s.histMax));
    }
    return new CalibrationStats(out, metadata);
  }

  private static float firstMax(float[] x) {
    float m = 0;
    for (float v : x) {
      m = Math.max(m, Math.abs(v));
    }
    return m == 0 ? 1 : m;
  }

  private static final class State {
    final String module;
    final int n;
    final float[] absMax;
    final double[] sumAbs;
    final double[] sumSq;
    final double[] gram;
    final long[] histogram;
    final float histMax;
    long tokens;

    State(String module, int n, boolean gram, int bins, float histMax) {
      this.module = module;
      this.n = n;
      this.absMax = new float[n];
      this.sumAbs = new double[n];
      this.sumSq = new double[n];
      this.gram = gram ? new double[n * n] : null;
      this.histogram = new long[bins];
      this.histMax = histMax;
    }
  }
}
