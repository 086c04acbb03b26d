package io.distillery.deployer.packaging;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.distillery.deployer.DeployerParams;
import io.distillery.model.config.LlamaConfig;
import io.distillery.model.config.LlamaTensorNames;
import io.distillery.model.quant.CompressedTensorsConformance;
import io.distillery.model.quant.Sparse24Bitmask;
import io.distillery.model.quant.VllmConstraints;
import io.distillery.model.safetensors.Checkpoint;
import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * Whether a checkpoint can run on a GPU target, decided before anything is packaged: a checkpoint
 * the engine cannot load or run is refused with the rule it breaks (IllegalArgumentException, a
 * fatal job error), and one that only fits a slower kernel gets a warning. The rules are read from
 * the engines' sources (revisions in docs/formats.md): vLLM's compressed-tensors loader and Marlin
 * utilities for {@code gpu-vllm} (see {@link CompressedTensorsConformance} and {@link
 * VllmConstraints}), TensorRT-LLM's PyTorch-backend linear methods and checkpoint loaders for
 * {@code gpu-trtllm}.
 */
public final class GpuTargets {

  /**
   * Group sizes TensorRT-LLM's W4A16 AWQ GEMM takes: {@code _torch/modules/linear.py}
   * W4A16_AWQ_LinearMethod runs {@code finegrained_mixed_dtype_gemm} (CUTLASS fpA_intB), whose
   * fine-grained kernels are instantiated for groups of 64 and 128; ModelOpt exports W4A16_AWQ with
   * group 128.
   */
  public static final Set<Integer> TRTLLM_AWQ_GROUP_SIZES = Set.of(64, 128);

  private GpuTargets() {}

  /**
   * What a GPU target can do with a checkpoint: warnings, and for gpu-trtllm the quant_algo it is
   * exported as.
   */
  public record Verdict(List<String> warnings, String trtLlmQuantAlgo) {}

  /**
   * Checks {@code modelDir} against {@code target}'s engine.
   *
   * @throws IllegalArgumentException naming the rule the checkpoint breaks, when the target cannot
   *     serve it
   */
  public static Verdict check(
      String target, CheckpointQuantization q, Path modelDir, LlamaConfig config)
      throws IOException {
    return switch (target) {
      case DeployerParams.GPU_VLLM -> vllm(q, modelDir, config);
      case DeployerParams.GPU_TRTLLM -> trtllm(q, modelDir, config);
      default -> new Verdict(List.of(), null);
    };
  }

  private static Verdict vllm(CheckpointQuantization q, Path modelDir, LlamaConfig config)
      throws IOException {
    List<String> violations = CompressedTensorsConformance.violations(modelDir);
    if (!violations.isEmpty()) {
      throw new IllegalArgumentException(
          "target gpu-vllm: vLLM's compressed-tensors loader would refuse this "
              + q.scheme()
              + " checkpoint: "
              + String.join("; ", violations));
    }
    List<String> warnings = new ArrayList<>();
    if (q.scheme().matches("w\\d+a16") || q.scheme().equals("fp8")) {
      VllmConstraints.KernelFit fit =
          VllmConstraints.marlin(quantizedShapes(modelDir, config), q.groupSize());
      if (!fit.fits()) {
        throw new IllegalArgumentException(
            "target gpu-vllm: "
                + q.scheme()
                + " "
                + fit.refusal()
                + "; requantize with groupSize 32, 64 or 128");
      }
      if (!fit.warnings().isEmpty()) {
        warnings.add(
            "gpu-vllm: "
                + fit.warnings().size()
                + " layer(s) fall off vLLM's Marlin kernels (marlin_utils.py "
                + "verify_marlin_supports_shape), so vLLM picks a slower kernel or none on this GPU: "
                + String.join("; ", fit.warnings().subList(0, Math.min(3, fit.warnings().size())))
                + (fit.warnings().size() > 3 ? "; ..." : ""));
      }
    }
    JsonNode quantizationConfig = quantizationConfig(modelDir);
    if (q.sparsity() != null && Sparse24Bitmask.vllmRefusal(quantizationConfig) == null) {
      // the layers supports_cutlass_24 hands to CompressedTensors24 (weight-only ones ignore 2:4)
      warnings.add(
          "gpu-vllm: the checkpoint declares "
              + q.sparsity()
              + " sparsity; vLLM runs such "
              + q.scheme()
              + " layers with CompressedTensors24 (compressed_tensors.py supports_cutlass_24, "
              + "schemes/compressed_tensors_24.py: CUTLASS 2:4 sparse GEMM, compute capability 9.0 / Hopper only)"
              + "; vLLM releases from 0.19 refuse such a checkpoint (PR #36799 made CompressedTensors24 raise "
              + "'Sparse24 models are no longer supported by vLLM'), so it needs the package's image (vLLM 0.15.1)"
              + "; for another GPU or a newer vLLM, deploy with sparseFormat: none (no sparsity_config, the"
              + " zeros as plain dense weights)"
              + (Sparse24Bitmask.FORMAT.equals(
                      quantizationConfig.at("/sparsity_config/format").asText())
                  ? "; stored sparse-24-bitmask, which vLLM decompresses with compressed-tensors <= 0.14 "
                      + "(0.15 removed the sparse compressors, PR #610; vLLM 0.15 pins 0.13.0)"
                  : ""));
    }
    return new Verdict(warnings, null);
  }

  /** The {@code quantization_config} of {@code modelDir}'s config.json (a missing node if none). */
  private static JsonNode quantizationConfig(Path modelDir) throws IOException {
    return new ObjectMapper()
        .readTree(modelDir.resolve(LlamaConfig.FILE_NAME).toFile())
        .path("quantization_config");
  }

  private static Verdict trtllm(CheckpointQuantization q, Path modelDir, LlamaConfig config) {
    String cannot =
        "target gpu-trtllm: TensorRT-LLM has no pre-quantized form for " + q.scheme() + " ";
    String ct =
        "its loader refuses compressed-tensors except FP8 per-token/block and NVFP4/MXFP4 "
            + "(llmapi/llm_utils.py 'Unsupported quantization_config', models/quant_config_utils.py "
            + "update_quant_config_from_compressed_tensors)";
    if (!q.quantized()) {
      return new Verdict(List.of(), null); // a float HF checkpoint: TensorRT-LLM loads it as it is
    }
    return switch (q.scheme()) {
      case "w4a16" -> {
        if (q.zeroPoint()) {
          throw new IllegalArgumentException(
              cannot
                  + "with zero points: W4A16_AWQ is symmetric (_torch/modules/"
                  + "linear.py W4A16_AWQ_LinearMethod passes zeros=None), W4A16_GPTQ raises 'unsupported quant mode' on "
                  + "the PyTorch backend (linear.py get_quant_method), and "
                  + ct
                  + "; requantize with symmetric: true");
        }
        if (!TRTLLM_AWQ_GROUP_SIZES.contains(q.groupSize())) {
          throw new IllegalArgumentException(
              cannot
                  + "with group size "
                  + q.groupSize()
                  + ": W4A16_AWQ's "
                  + "finegrained_mixed_dtype_gemm takes groups of "
                  + TRTLLM_AWQ_GROUP_SIZES.stream().sorted().toList()
                  + " (linear.py W4A16_AWQ_LinearMethod); requantize with groupSize 64 or 128");
        }
        yield new Verdict(List.of(), "W4A16_AWQ");
      }
      case "w8a16" ->
          throw new IllegalArgumentException(
              cannot
                  + "(INT8 weight-only): ModelOpt's HF export, the "
                  + "pre-quantized form TensorRT-LLM reads (hf_quant_config.json), has no INT8 weight-only algorithm "
                  + "(modelopt export/quant_utils.py), and "
                  + ct
                  + "; deploy it with target gpu-vllm");
      case "w8a8" ->
          throw new IllegalArgumentException(
              cannot
                  + "(static per-tensor INT8 SmoothQuant): "
                  + "W8A8_SQ_PER_CHANNEL is built only by the legacy TensorRT engine flow, which calibrates again, the "
                  + "PyTorch backend has no linear method for it (linear.py get_quant_method), and "
                  + ct
                  + "; deploy it with target gpu-vllm");
      case "fp8" ->
          throw new IllegalArgumentException(
              cannot
                  + "(FP8 weight-only): TensorRT-LLM's FP8 methods "
                  + "quantize activations too (FP8 per-tensor needs a calibrated input_scale, FP8_PER_CHANNEL_PER_TOKEN "
                  + "dynamic per-token inputs; linear.py FP8QDQLinearMethod, FP8RowwiseLinearMethod), and "
                  + ct
                  + "; deploy it with target gpu-vllm");
      default ->
          throw new IllegalArgumentException(
              cannot
                  + "("
                  + q.format()
                  + ", "
                  + q.bits()
                  + " bits): "
                  + "QuantAlgo (quantization/mode.py) has no such weight-only algorithm, and "
                  + ct);
    };
  }

  /** [out, in] of every quantized linear layer (those with a weight_scale), by module. */
  static Map<String, long[]> quantizedShapes(Path modelDir, LlamaConfig config) throws IOException {
    Map<String, long[]> shapes = LlamaTensorNames.shapes(config);
    Map<String, long[]> out = new LinkedHashMap<>();
    try (Checkpoint file = Checkpoint.open(modelDir)) {
      for (String m : LlamaTensorNames.linearModules(config)) {
        if (file.contains(m + ".weight_scale")) {
          out.put(m, shapes.get(LlamaTensorNames.weight(m)));
        }
      }
    }
    return out;
  }
}
