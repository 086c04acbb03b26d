package io.distillery.pruner;

import java.util.List;
import java.util.Set;

/**
 * Params of the pruner stage, validated here in one place; an invalid value fails the job as
 * non-retryable with the param's name in the message.
 *
 * @param method {@code magnitude}, {@code wanda}, {@code sparsegpt} (unstructured or 2:4 masks,
 *     dense shapes kept) or {@code structured} (whole heads, MLP channels and layers removed: a
 *     smaller dense checkpoint)
 * @param sparsity fraction of weights pruned per output row for {@code pattern=unstructured}, in
 *     (0,1)
 * @param pattern {@code unstructured} (default) or {@code 2:4} (two zeros in every four consecutive
 *     inputs)
 * @param exclude linear modules left dense: an exact module name ({@code lm_head}) or a name suffix
 *     ({@code down_proj}); default {@code [lm_head]} (embeddings are never linear layers)
 * @param damp SparseGPT's Hessian dampening as a fraction of the mean diagonal (0.01)
 * @param blockSize SparseGPT's column block (128): the unit of adaptive mask selection and lazy
 *     updates
 * @param headFraction structured: fraction of key/value groups (with their query heads) removed per
 *     layer, in [0,1)
 * @param mlpFraction structured: fraction of MLP intermediate channels removed per layer, in [0,1)
 * @param dropLayers structured: number of whole decoder layers removed, >= 0
 * @param sequential streamed Wanda and SparseGPT: calibrate layer i+1 on the outputs of the already
 *     pruned layer i, as the SparseGPT and Wanda reference code and llm-compressor's sequential
 *     pipeline do (default true); false takes every layer's statistics from the original model in
 *     one pass, as a whole-model calibration does. Magnitude pruning runs no forward pass either
 *     way
 * @param streaming run on the layer-streaming executor: null (the default) streams every method it
 *     supports (magnitude, and Wanda and SparseGPT when the calibration carries its token ids;
 *     structured pruning streams its weights one layer at a time), true requires it, false keeps
 *     the whole model in memory (refused up front when it cannot fit the worker's budget)
 */
public record PrunerParams(
    String method,
    Double sparsity,
    String pattern,
    List<String> exclude,
    Double damp,
    Integer blockSize,
    Double headFraction,
    Double mlpFraction,
    Integer dropLayers,
    Boolean sequential,
    Boolean streaming) {

  public static final Set<String> METHODS = Set.of("magnitude", "wanda", "sparsegpt", "structured");
  public static final Set<String> PATTERNS = Set.of("unstructured", "2:4");

  /**
   * The params with only the first nine given ({@code sequential} and {@code streaming} at their
   * defaults).
   */
  public PrunerParams(
      String method,
      Double sparsity,
      String pattern,
      List<String> exclude,
      Double damp,
      Integer blockSize,
      Double headFraction,
      Double mlpFraction,
      Integer dropLayers) {
    this(
        method,
        sparsity,
        pattern,
        exclude,
        damp,
        blockSize,
        headFraction,
        mlpFraction,
        dropLayers,
        null,
        null);
  }

  public PrunerParams {
    if (method == null || !METHODS.contains(method)) {
      throw new IllegalArgumentException(
          "method '" + method + "' is not one of " + METHODS.stream().sorted().toList());
    }
    pattern = pattern == null ? "unstructured" : pattern;
    if (!PATTERNS.contains(pattern)) {
      throw new IllegalArgumentException(
          "pattern '" + pattern + "' is not one of [unstructured, 2:4]");
    }
    exclude = exclude == null ? List.of("lm_head") : List.copyOf(exclude);
    damp = damp == null ? 0.01 : damp;
    if (!(damp >= 0) || damp.isInfinite()) {
      throw new IllegalArgumentException("damp must be a non-negative number, got " + damp);
    }
    sequential = sequential == null || sequential;
    blockSize = blockSize == null ? 128 : blockSize;
    if (blockSize <= 0) {
      throw new IllegalArgumentException("blockSize must be positive, got " + blockSize);
    }
    if (method.equals("structured")) {
      headFraction = headFraction == null ? 0.0 : headFraction;
      mlpFraction = mlpFraction == null ? 0.0 : mlpFraction;
      dropLayers = dropLayers == null ? 0 : dropLayers;
      fraction("headFraction", headFraction);
      fraction("mlpFraction", mlpFraction);
      if (dropLayers < 0) {
        throw new IllegalArgumentException("dropLayers must not be negative, got " + dropLayers);
      }
      if (headFraction == 0 && mlpFraction == 0 && dropLayers == 0) {
        throw new IllegalArgumentException(
            "headFraction, mlpFraction and dropLayers are all 0: structured pruning would remove nothing");
      }
    } else if (pattern.equals("unstructured")) {
      if (sparsity == null || !(sparsity > 0 && sparsity < 1)) {
        throw new IllegalArgumentException(
            "sparsity must be in (0,1) for pattern unstructured, got " + sparsity);
      }
    } else if (sparsity != null && sparsity != 0.5) {
      throw new IllegalArgumentException(
          "sparsity " + sparsity + " contradicts pattern 2:4 (always 0.5); leave it out");
    }
  }

  private static void fraction(String name, double value) {
    if (!(value >= 0 && value < 1)) {
      throw new IllegalArgumentException(name + " must be in [0,1), got " + value);
    }
  }

  /** The mask pattern of the unstructured/semi-structured methods. */
  public SparsityPattern sparsityPattern() {
    return pattern.equals("2:4")
        ? SparsityPattern.nOfM(2, 4)
        : SparsityPattern.unstructured(sparsity);
  }

  /** Whether {@code module} is left dense. */
  public boolean excludes(String module) {
    for (String e : exclude) {
      if (module.equals(e) || module.endsWith("." + e)) {
        return true;
      }
    }
    return false;
  }
}
