package io.distillery.quantizer;

import ai.djl.ndarray.NDArray;
import io.distillery.model.calib.CalibrationStats;
import io.distillery.model.calib.StatsAccumulator;
import io.distillery.model.config.LlamaConfig;
import io.distillery.model.config.Projection;
import java.util.Map;
import java.util.Set;

/**
 * The calibrator's statistics of one streamed decoder layer's linear inputs (per channel abs-max,
 * sum |x|, sum x^2, the pooled |x| histogram and, for the modules that need it, X^T X: {@link
 * StatsAccumulator}), gathered while the calibration batch passes through the layer, so that AWQ
 * and SmoothQuant need only the samples' token ids. It exists so that streamed and whole-model AWQ
 * and SmoothQuant read statistics of one definition: the same accumulator, fed the same batches in
 * the same order, with the calibrator's histogram headroom and bin count; a module handed the very
 * tensor the previous module was handed (q/k/v, gate/up) shares that module's accumulation, as the
 * calibrator's observer does. Holds one layer's statistics at a time.
 */
final class LayerInputStatistics {

  /** The calibrator's histogram range: the first batch's max |x| times this (its HIST_HEADROOM). */
  static final float HIST_HEADROOM = 2.0f;

  /** The calibrator's default |x| histogram bins, when its artefact does not name its own. */
  static final int DEFAULT_BINS = 2048;

  /** Rows of X per native X^T X product (StatsAccumulator's chunk). */
  private static final long GRAM_CHUNK = 4096;

  private final int bins;
  private final Set<String> withGram;
  private StatsAccumulator accumulator;
  private NDArray lastInput;
  private String lastModule;
  private double gramFlops;

  /**
   * @param bins |x| histogram bins (the calibrator's {@code bins})
   * @param withGram modules whose X^T X is accumulated (AWQ's quantized modules; none for
   *     SmoothQuant)
   */
  LayerInputStatistics(int bins, Set<String> withGram) {
    this.bins = bins;
    this.withGram = Set.copyOf(withGram);
  }

  /** Adds one batch of {@code module}'s input, {@code [batch, seq, n]}. */
  void add(String module, NDArray input) {
    if (accumulator == null) {
      accumulator = new StatsAccumulator(bins, HIST_HEADROOM, withGram, false);
    }
    if (input == lastInput) {
      accumulator.share(module, lastModule);
      return;
    }
    long[] shape = input.getShape().getShape();
    int n = Math.toIntExact(shape[shape.length - 1]);
    accumulator.add(module, input.toFloatArray(), n);
    if (withGram.contains(module)) {
      gramFlops += 2.0 * (input.size() / n) * n * n;
    }
    lastInput = input;
    lastModule = module;
  }

  /** Forgets the last tensor, so that one of the next batch is never mistaken for it. */
  void endOfBatch() {
    lastInput = null;
    lastModule = null;
  }

  /**
   * The layer's statistics, by module; the accumulation is dropped (the next layer starts afresh).
   *
   * @throws IllegalStateException if nothing was observed
   */
  CalibrationStats take(int layer) {
    if (accumulator == null) {
      throw new IllegalStateException("no calibration input reached layer " + layer);
    }
    CalibrationStats stats = accumulator.result(Map.of());
    accumulator = null;
    endOfBatch();
    return stats;
  }

  /** X^T X floating-point operations so far (2 x tokens x n^2 per distinct input with one). */
  double gramFlops() {
    return gramFlops;
  }

  /**
   * Bytes held while the batch passes one layer: every distinct input's channel sums and histogram,
   * with {@code gram} its X^T X in f64, and the transients of one add (the batch's widest input
   * copied to Java and, with {@code gram}, a native chunk of it and the f32 product, its sum and
   * its copy).
   */
  static long observeBytes(LlamaConfig config, long batchTokens, int bins, boolean gram) {
    long[] widths = distinctWidths(config);
    long bytes = 0;
    long widest = 0;
    for (long n : widths) {
      bytes += n * (4 + 8 + 8) + (long) bins * 8;
      if (gram) {
        bytes += n * n * 8;
      }
      widest = Math.max(widest, n);
    }
    bytes += batchTokens * widest * 4;
    if (gram) {
      bytes += Math.min(batchTokens, GRAM_CHUNK) * widest * 4 + 3 * widest * widest * 4;
    }
    return bytes;
  }

  /** X^T X of every distinct input of one layer in f64. */
  static long gramBytes(LlamaConfig config) {
    long bytes = 0;
    for (long n : distinctWidths(config)) {
      bytes += n * n * 8;
    }
    return bytes;
  }

  /** Widths of a layer's distinct linear inputs: attention, o_proj, MLP, down_proj. */
  static long[] distinctWidths(LlamaConfig config) {
    return new long[] {
      Projection.Q.inFeatures(config),
      Projection.O.inFeatures(config),
      Projection.GATE.inFeatures(config),
      Projection.DOWN.inFeatures(config)
    };
  }
}
