package io.distillery.model.stream;

import io.distillery.model.MemoryBudget;
import io.distillery.model.config.LlamaConfig;
import io.distillery.model.config.Projection;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * The peak memory of a streamed stage, estimated from config.json, the calibration batch and the
 * method before any work starts, so that a job that cannot fit its worker fails at once with both
 * numbers instead of with an OutOfMemoryError an hour in. The pieces (bytes), after
 * /work/shared/SCALE.md:
 *
 * <ul>
 *   <li>runtime: the JVM and the PyTorch engine's own footprint (measured at about 0.45 GB on this
 *       platform);
 *   <li>layer: one decoder layer widened to F32 twice (Java arrays and DJL arrays) plus its
 *       rewritten copy (e.g. the quantized codes and the dequantized weight);
 *   <li>hidden states: tokens x hidden x 4, twice (a layer's inputs and its outputs);
 *   <li>forward workspace of one batch: the MLP's intermediate (gate, up, activation, product: 4 x
 *       batchTokens x intermediate x 4), the attention scores (3 x rows x heads x seq^2 x 4), and
 *       ~8 hidden-sized temporaries;
 *   <li>Hessians (GPTQ): one layer's distinct inputs' X^T X in f64 (q/k/v, o, gate/up, down) while
 *       the batch passes; afterwards, while the widest is solved, {@value #GPTQ_WORKING_COPIES} n x
 *       n floats: the Hessian handed to the solve in float32, which becomes U in place, plus what
 *       {@code bench/gptqmem} measured beyond it (GPTQ of a 2048 x 8192 weight with an 8192 x 8192
 *       Hessian, -Xmx2g: RssAnon up by 3.0 n^2 floats for W, its copy, the codes and the heap's
 *       slack). The float64 solve this replaced took 5 n x n doubles, 2.5 times as much.
 *   <li>statistics and search (a stage's own pieces, added with {@link #with}): e.g. AWQ's and
 *       SmoothQuant's per-layer activation statistics while the batch passes ("statistics", counted
 *       beside the forward workspace and Hessians) and AWQ's searches on them afterwards ("search",
 *       counted like the GPTQ solve).
 * </ul>
 *
 * The peak is runtime + layer + hidden states + the largest of (forward workspace + Hessians +
 * statistics), the GPTQ solve and the search.
 */
public record MemoryPlan(Map<String, Long> pieces) {

  /**
   * What the JVM (heap in use, metaspace, code) and libtorch take before any model data; measured
   * on this platform.
   */
  public static final long RUNTIME_BYTES = 450L << 20;

  /** n x n float arrays alive while GPTQ solves one module (see the class comment). */
  public static final int GPTQ_WORKING_COPIES = 4;

  public MemoryPlan {
    pieces = Map.copyOf(new LinkedHashMap<>(pieces));
  }

  /** The estimated peak in bytes. */
  public long peakBytes() {
    long during =
        pieces.getOrDefault("forward_workspace", 0L)
            + pieces.getOrDefault("hessians", 0L)
            + pieces.getOrDefault("statistics", 0L);
    long after = Math.max(pieces.getOrDefault("gptq_solve", 0L), pieces.getOrDefault("search", 0L));
    return pieces.get("runtime")
        + pieces.get("layer")
        + pieces.getOrDefault("hidden_states", 0L)
        + Math.max(during, after);
  }

  /**
   * This plan with {@code piece} set to {@code bytes} (added, or replacing the estimate's): how a
   * stage adds what only it holds, "statistics" or "search" (see the class comment).
   */
  public MemoryPlan with(String piece, long bytes) {
    Map<String, Long> out = new LinkedHashMap<>(pieces);
    out.put(piece, bytes);
    return new MemoryPlan(out);
  }

  /**
   * @param tokens calibration tokens in all (0 for a method that observes nothing)
   * @param batchTokens tokens of the largest batch
   * @param batchRows rows of the largest batch
   * @param seqLen longest sample
   * @param hessians whether the method accumulates X^T X and runs GPTQ-style solves
   */
  public static MemoryPlan estimate(
      LlamaConfig config,
      long tokens,
      long batchTokens,
      int batchRows,
      int seqLen,
      boolean hessians) {
    Map<String, Long> pieces = new LinkedHashMap<>();
    long hidden = config.hiddenSize();
    long inter = config.intermediateSize();
    long layerParams = 2 * hidden;
    for (Projection p : Projection.values()) {
      layerParams += (long) p.inFeatures(config) * p.outFeatures(config);
    }
    pieces.put("runtime", RUNTIME_BYTES);
    pieces.put("layer", 3 * layerParams * 4);
    if (tokens > 0) {
      pieces.put("hidden_states", 2 * tokens * hidden * 4);
      long mlp = 4 * batchTokens * inter * 4;
      long attention = 3L * batchRows * config.numAttentionHeads() * seqLen * seqLen * 4;
      pieces.put("forward_workspace", mlp + attention + 8 * batchTokens * hidden * 4);
    }
    if (hessians) {
      long attentionWidth = config.attentionWidth();
      long grams =
          (hidden * hidden + attentionWidth * attentionWidth + hidden * hidden + inter * inter) * 8;
      long widest = Math.max(Math.max(hidden, attentionWidth), inter);
      pieces.put("hessians", grams);
      pieces.put("gptq_solve", GPTQ_WORKING_COPIES * widest * widest * Float.BYTES);
    }
    return new MemoryPlan(pieces);
  }

  /**
   * "14.2 GB" or "99.6 MB": {@link MemoryBudget#format}, so plan and budget messages read alike.
   */
  public static String gigabytes(long bytes) {
    return MemoryBudget.format(bytes);
  }

  /**
   * The message of a job that does not fit, or null when it does: "needs 14.2 GB, this worker has
   * 6.0 GB: raise DISTILLERY_WORKER_MEMORY or lower samples/seqLen".
   */
  public String refusal(long budgetBytes) {
    String refusal = MemoryBudget.refusal(peakBytes(), budgetBytes);
    return refusal == null ? null : refusal + " (estimate " + this + ")";
  }

  @Override
  public String toString() {
    StringBuilder s = new StringBuilder();
    pieces.forEach(
        (k, v) -> s.append(s.isEmpty() ? "" : ", ").append(k).append(' ').append(gigabytes(v)));
    return s.toString();
  }
}
