package io.distillery.deployer;

import java.util.List;
import java.util.regex.Pattern;

/**
 * Params of the deployer stage, validated here (an IllegalArgumentException names the param and
 * fails the job as non-retryable). Token limits are checked against the model's {@code
 * max_position_embeddings} when the stage runs.
 *
 * @param target {@code local} (CPU serving node, default), {@code gpu-vllm} (DJL Serving LMI with
 *     vLLM, the default GPU target; {@code gpu} means it too) or {@code gpu-trtllm} (TensorRT-LLM's
 *     {@code trtllm-serve} on a pre-quantized ModelOpt-style export); a GPU target refuses a
 *     checkpoint its engine cannot run
 * @param deployment the deployment id; default: the run's label {@code deployment}
 * @param canaryPercent share of requests the new package gets first, 1..100 (default 100: no canary
 *     phase)
 * @param canaryWindowSeconds longest time the canary is watched before the verdict (default 300)
 * @param canaryMinRequests canary requests after which the verdict need not wait for the window
 *     (default 100)
 * @param rollbackMargin roll back when the canary's misfire+error rate exceeds the stable one's by
 *     more than this, 0..1 (default 0.05)
 * @param activeTimeoutSeconds how long to wait for a serving node to answer DeploymentActive
 *     (default 120)
 * @param redistillRecipe the recipe a re-distillation of this deployment runs (default
 *     recipes/redistill.yaml)
 * @param maxInputTokens longest prompt on the GPU target (default: half of max_position_embeddings)
 * @param maxOutputTokens longest answer on the GPU target (default: the rest of
 *     max_position_embeddings); with maxInputTokens it gives the engine's max model length
 * @param maxRollingBatchSize concurrent sequences per model copy on the GPU target (default 32)
 * @param sparseFormat how a 2:4-pruned checkpoint's weights are packaged: {@code auto} (default:
 *     compressed-tensors' compressed {@code sparse-24-bitmask} layout where vLLM runs it, i.e.
 *     target gpu-vllm with unquantized or 8-bit W8A8 sparse layers whose features are multiples of
 *     8; dense elsewhere, with the reason as a warning), {@code dense} (zeros stored, as the pruner
 *     writes them), {@code sparse-24-bitmask} (refused, naming vLLM's rule, where vLLM cannot load
 *     it) or {@code none} (the zeros as plain dense weights without a {@code sparsity_config}:
 *     loads on GPUs other than Hopper and in vLLM 0.19 and later, without 2:4 kernels); see {@code
 *     SparseFormat}
 */
public record DeployerParams(
    String target,
    String deployment,
    Integer canaryPercent,
    Integer canaryWindowSeconds,
    Integer canaryMinRequests,
    Double rollbackMargin,
    Integer activeTimeoutSeconds,
    String redistillRecipe,
    Integer maxInputTokens,
    Integer maxOutputTokens,
    Integer maxRollingBatchSize,
    String sparseFormat) {

  public static final String LOCAL = "local";

  /** {@code sparseFormat} values: auto (default), dense, sparse-24-bitmask, none. */
  public static final List<String> SPARSE_FORMATS =
      List.of("auto", "dense", "sparse-24-bitmask", "none");

  /** The default GPU target's alias. */
  public static final String GPU = "gpu";

  public static final String GPU_VLLM = "gpu-vllm";
  public static final String GPU_TRTLLM = "gpu-trtllm";
  public static final List<String> TARGETS = List.of(LOCAL, GPU_VLLM, GPU_TRTLLM, GPU);
  public static final String DEFAULT_REDISTILL_RECIPE = "recipes/redistill.yaml";

  /**
   * A deployment id is a topic key and a Kubernetes label value: letters, digits, '.', '_' and '-'.
   */
  public static final Pattern DEPLOYMENT_ID =
      Pattern.compile("[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?");

  public DeployerParams {
    target = target == null ? LOCAL : target;
    canaryPercent = canaryPercent == null ? 100 : canaryPercent;
    canaryWindowSeconds = canaryWindowSeconds == null ? 300 : canaryWindowSeconds;
    canaryMinRequests = canaryMinRequests == null ? 100 : canaryMinRequests;
    rollbackMargin = rollbackMargin == null ? 0.05 : rollbackMargin;
    activeTimeoutSeconds = activeTimeoutSeconds == null ? 120 : activeTimeoutSeconds;
    redistillRecipe = redistillRecipe == null ? DEFAULT_REDISTILL_RECIPE : redistillRecipe;
    maxRollingBatchSize = maxRollingBatchSize == null ? 32 : maxRollingBatchSize;
    sparseFormat = sparseFormat == null ? SPARSE_FORMATS.getFirst() : sparseFormat;
    if (!SPARSE_FORMATS.contains(sparseFormat)) {
      throw new IllegalArgumentException(
          "sparseFormat: must be one of " + SPARSE_FORMATS + ", got '" + sparseFormat + "'");
    }
    if (!TARGETS.contains(target)) {
      throw new IllegalArgumentException(
          "target: must be one of " + TARGETS + ", got '" + target + "'");
    }
    target = target.equals(GPU) ? GPU_VLLM : target;
    if (deployment != null && !DEPLOYMENT_ID.matcher(deployment).matches()) {
      throw new IllegalArgumentException(
          "deployment: '"
              + deployment
              + "' is not a valid id (letters, digits, '.', '_', '-'; at most 63; starts and ends alphanumeric)");
    }
    if (canaryPercent < 1 || canaryPercent > 100) {
      throw new IllegalArgumentException("canaryPercent: must lie in 1..100, got " + canaryPercent);
    }
    if (canaryWindowSeconds < 1) {
      throw new IllegalArgumentException(
          "canaryWindowSeconds: must be at least 1, got " + canaryWindowSeconds);
    }
    if (canaryMinRequests < 1) {
      throw new IllegalArgumentException(
          "canaryMinRequests: must be at least 1, got " + canaryMinRequests);
    }
    if (!(rollbackMargin >= 0 && rollbackMargin <= 1)) {
      throw new IllegalArgumentException(
          "rollbackMargin: must lie in [0, 1], got " + rollbackMargin);
    }
    if (activeTimeoutSeconds < 1) {
      throw new IllegalArgumentException(
          "activeTimeoutSeconds: must be at least 1, got " + activeTimeoutSeconds);
    }
    if (redistillRecipe.isBlank()) {
      throw new IllegalArgumentException(
          "redistillRecipe: must name a recipe file or a recipe under recipes/");
    }
    if (maxInputTokens != null && maxInputTokens < 1) {
      throw new IllegalArgumentException(
          "maxInputTokens: must be at least 1, got " + maxInputTokens);
    }
    if (maxOutputTokens != null && maxOutputTokens < 1) {
      throw new IllegalArgumentException(
          "maxOutputTokens: must be at least 1, got " + maxOutputTokens);
    }
    if (maxRollingBatchSize < 1) {
      throw new IllegalArgumentException(
          "maxRollingBatchSize: must be at least 1, got " + maxRollingBatchSize);
    }
  }

  /** Whether the target is a GPU engine (its kernel constraints are checked before packaging). */
  public boolean gpu() {
    return !target.equals(LOCAL);
  }

  /**
   * Whether the rollout starts with a canary share (it still needs a stable package to compare
   * against).
   */
  public boolean canary() {
    return canaryPercent < 100;
  }
}
