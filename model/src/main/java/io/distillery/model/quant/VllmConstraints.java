package io.distillery.model.quant;

import io.distillery.model.config.LlamaTensorNames;
import java.util.ArrayList;
import java.util.Collection;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * The rules vLLM's compressed-tensors loader imposes on a checkpoint beyond the format itself, read
 * from vLLM's {@code model_executor/layers/quantization/compressed_tensors/}
 * (compressed_tensors.py, utils.py) and {@code utils/marlin_utils.py} (2025 releases; vLLM 0.15.1
 * is what DJL LMI v20 ships). Each check names the rule and where it comes from, so that a refused
 * checkpoint says why.
 */
public final class VllmConstraints {

  /**
   * vLLM's {@code packed_modules_mapping} of Llama: the shards one fused layer is built from.
   * compressed_tensors {@code utils.py} {@code should_ignore_layer} raises "Found a different
   * quantization schemes for ... vLLM requires all to use the same scheme" when some shards of one
   * fused layer are ignored and others are not.
   */
  public static final Map<String, List<String>> FUSED_SHARDS =
      Map.of(
          "qkv_proj", List.of("q_proj", "k_proj", "v_proj"),
          "gate_up_proj", List.of("gate_proj", "up_proj"));

  /** marlin_utils.py {@code MARLIN_SUPPORTED_GROUP_SIZES} (-1: one group per channel). */
  public static final Set<Integer> MARLIN_GROUP_SIZES = Set.of(-1, 32, 64, 128);

  /**
   * marlin_utils.py {@code GPTQ_MARLIN_MIN_THREAD_N}: out_features of each partition is a multiple
   * of it.
   */
  public static final int MARLIN_MIN_THREAD_N = 64;

  /**
   * marlin_utils.py {@code GPTQ_MARLIN_MIN_THREAD_K}: in_features of each partition is a multiple
   * of it.
   */
  public static final int MARLIN_MIN_THREAD_K = 128;

  private VllmConstraints() {}

  /**
   * Refuses an ignore list that leaves some shards of a fused layer dense and quantizes the others.
   *
   * @param ignored full module names, e.g. {@code model.layers.0.self_attn.k_proj}
   * @throws IllegalArgumentException naming the fused layer and the shards on each side
   */
  public static void checkFusedShards(Collection<String> ignored) {
    Set<String> set = Set.copyOf(ignored);
    for (String module : set) {
      int dot = module.lastIndexOf('.');
      String prefix = module.substring(0, dot + 1);
      String leaf = module.substring(dot + 1);
      for (Map.Entry<String, List<String>> fused : FUSED_SHARDS.entrySet()) {
        if (!fused.getValue().contains(leaf)) {
          continue;
        }
        List<String> quantized = new ArrayList<>();
        for (String shard : fused.getValue()) {
          if (!set.contains(prefix + shard)) {
            quantized.add(prefix + shard);
          }
        }
        if (!quantized.isEmpty()) {
          throw new IllegalArgumentException(
              "fused group "
                  + prefix
                  + fused.getKey()
                  + " "
                  + fused.getValue()
                  + " is split: "
                  + module
                  + " stays dense but "
                  + quantized
                  + " would be quantized; vLLM requires all "
                  + "shards of a fused layer to share one scheme (compressed_tensors/utils.py should_ignore_layer "
                  + "raises 'Found a different quantization schemes'): exclude all of "
                  + fused.getValue()
                  + " or none");
        }
      }
    }
  }

  /**
   * Refuses to quantize the LM head or the embeddings: vLLM quantizes only {@code LinearBase},
   * attention and fused-MoE layers through compressed-tensors ({@code compressed_tensors.py} {@code
   * get_quant_method}); {@code ParallelLMHead} / {@code VocabParallelEmbedding} keep a plain {@code
   * weight} and have no {@code weight_packed} / {@code weight_scale} to load into, and
   * llm-compressor always leaves lm_head dense.
   */
  public static void checkQuantizable(String module) {
    if (module.equals(LlamaTensorNames.LM_HEAD_MODULE)
        || module.endsWith("." + LlamaTensorNames.LM_HEAD_MODULE)
        || module.endsWith("embed_tokens")) {
      throw new IllegalArgumentException(
          module
              + " must stay dense: vLLM loads compressed-tensors weights into "
              + "linear layers only (compressed_tensors.py get_quant_method: LinearBase, Attention, FusedMoE); its "
              + "ParallelLMHead and VocabParallelEmbedding have no weight_packed/weight_scale parameters");
    }
  }

  /** The outcome of {@link #marlin}: null {@code refusal} when the fast kernels fit. */
  public record KernelFit(String refusal, List<String> warnings) {

    public boolean fits() {
      return refusal == null;
    }
  }

  /**
   * Whether vLLM's Marlin kernels (GPTQ-Marlin for WNA16, FP8-Marlin for weight-only FP8) can run a
   * layer of {@code [out, in]} quantized with {@code groupSize} (-1 per channel), with tensor
   * parallelism 1. marlin_utils.py: the group size must be one of {@link #MARLIN_GROUP_SIZES}
   * ({@code verify_marlin_supported}); out_features % 64 and in_features % 128 ({@code
   * verify_marlin_supports_shape}) and in_features % group.
   *
   * @return a refusal when the group size is outside the set (no vLLM kernel takes it: the
   *     checkpoint cannot run), a warning per layer whose shape falls off Marlin (vLLM then picks a
   *     slower kernel such as Exllama or Machete, or fails on GPUs where none fits)
   */
  public static KernelFit marlin(Map<String, long[]> shapes, int groupSize) {
    if (!MARLIN_GROUP_SIZES.contains(groupSize)) {
      return new KernelFit(
          "group size "
              + groupSize
              + " is not one vLLM's Marlin kernels take "
              + sorted()
              + " (vllm model_executor/layers/quantization/utils/marlin_utils.py MARLIN_SUPPORTED_GROUP_SIZES)",
          List.of());
    }
    List<String> warnings = new ArrayList<>();
    for (Map.Entry<String, long[]> e : shapes.entrySet()) {
      long out = e.getValue()[0];
      long in = e.getValue()[1];
      List<String> broken = new ArrayList<>();
      if (out % MARLIN_MIN_THREAD_N != 0) {
        broken.add(
            "out_features "
                + out
                + " % "
                + MARLIN_MIN_THREAD_N
                + " != 0 (GPTQ_MARLIN_MIN_THREAD_N)");
      }
      if (in % MARLIN_MIN_THREAD_K != 0) {
        broken.add(
            "in_features " + in + " % " + MARLIN_MIN_THREAD_K + " != 0 (GPTQ_MARLIN_MIN_THREAD_K)");
      }
      if (groupSize > 0 && in % groupSize != 0) {
        broken.add("in_features " + in + " % group " + groupSize + " != 0");
      }
      if (!broken.isEmpty()) {
        warnings.add(e.getKey() + ": " + String.join(", ", broken));
      }
    }
    return new KernelFit(null, warnings);
  }

  private static List<Integer> sorted() {
    return MARLIN_GROUP_SIZES.stream().sorted().toList();
  }
}
