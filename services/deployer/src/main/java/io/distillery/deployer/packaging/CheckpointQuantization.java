package io.distillery.deployer.packaging;

import com.fasterxml.jackson.databind.JsonNode;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * How a checkpoint's linear weights are stored, read from the {@code quantization_config} of its
 * {@code config.json} (compressed-tensors, as the quantizer writes it), and what that means for each serving target.
 * A checkpoint without {@code quantization_config} is dense.
 *
 * <p>TensorRT-LLM names (its {@code QuantAlgo}): our INT4 group weights are asymmetric (codes with zero points, no
 * pre-quant scale, AWQ scales already folded into the neighbouring norms), which is TensorRT-LLM's
 * {@code W4A16_GPTQ} layout whatever algorithm chose the codes; INT8 per-channel weights alone are {@code W8A16};
 * with static per-tensor INT8 activations they are {@code W8A8_SQ_PER_CHANNEL}; FP8 weights are {@code FP8}.
 *
 * @param scheme a short id: none, w4a16, w8a16, w8a8, fp8
 * @param format compressed-tensors' format (pack-quantized, int-quantized, float-quantized) or "dense"
 * @param bits weight bits (16 or 32 for a dense checkpoint, after its torch_dtype)
 * @param groupSize INT4 group size, 0 when per channel or dense
 * @param zeroPoint whether weights carry zero points (asymmetric)
 */
public record CheckpointQuantization(String scheme, String format, int bits, int groupSize, boolean zeroPoint) {

  public static final CheckpointQuantization DENSE = new CheckpointQuantization("none", "dense", 32, 0, false);

  public boolean quantized() {
    return !scheme.equals("none");
  }

  /**
   * Reads {@code quantization_config} of a parsed {@code config.json}; IllegalArgumentException when it declares a
   * method or layout this deployer does not know how to serve.
   */
  public static CheckpointQuantization of(JsonNode config) {
    JsonNode q = config.get("quantization_config");
    if (q == null || q.isNull()) {
      return DENSE;
    }
    String method = q.path("quant_method").asText("");
    if (!method.equals("compressed-tensors")) {
      throw new IllegalArgumentException("quantization_config.quant_method '" + method
          + "' is not supported; the deployer serves dense and compressed-tensors checkpoints");
    }
    String format = q.path("format").asText("");
    JsonNode group = q.path("config_groups").elements().hasNext() ? q.path("config_groups").elements().next() : null;
    if (group == null) {
      throw new IllegalArgumentException("quantization_config has no config_groups");
    }
    JsonNode w = group.path("weights");
    int bits = w.path("num_bits").asInt(0);
    boolean staticInput = group.hasNonNull("input_activations");
    return switch (format) {
      case "pack-quantized" -> {
        if (bits != 4) {
          throw new IllegalArgumentException("pack-quantized weights of " + bits + " bits are not supported (4 only)");
        }
        yield new CheckpointQuantization("w4a16", format, 4, w.path("group_size").asInt(0),
            !w.path("symmetric").asBoolean(true));
      }
      case "int-quantized" -> new CheckpointQuantization(staticInput ? "w8a8" : "w8a16", format, 8, 0, false);
      case "float-quantized" -> new CheckpointQuantization("fp8", format, 8, 0, false);
      default -> throw new IllegalArgumentException("compressed-tensors format '" + format + "' is not supported");
    };
  }

  /** TensorRT-LLM's {@code QuantAlgo} name for these weights, or null for a dense checkpoint. */
  public String trtLlmQuantAlgo() {
    return switch (scheme) {
      case "w4a16" -> "W4A16_GPTQ";
      case "w8a16" -> "W8A16";
      case "w8a8" -> "W8A8_SQ_PER_CHANNEL";
      case "fp8" -> "FP8";
      default -> null;
    };
  }

  /**
   * The value of LMI's documented {@code option.quantize} for the TensorRT-LLM container (smoothquant, awq, fp8),
   * or null where none matches (dense, INT8 weight-only). INT4 group weights map to {@code awq}, LMI's only INT4
   * weight-only group-wise engine ({@code int4_awq}, block size = our group size).
   */
  public String lmiQuantize() {
    return switch (scheme) {
      case "w4a16" -> "awq";
      case "w8a8" -> "smoothquant";
      case "fp8" -> "fp8";
      default -> null;
    };
  }

  /** Lineage for manifest.json. */
  public Map<String, Object> describe() {
    Map<String, Object> m = new LinkedHashMap<>();
    m.put("scheme", scheme);
    m.put("format", format);
    m.put("bits", bits);
    if (groupSize > 0) {
      m.put("groupSize", groupSize);
    }
    m.put("zeroPoint", zeroPoint);
    if (trtLlmQuantAlgo() != null) {
      m.put("tensorrtLlmQuantAlgo", trtLlmQuantAlgo());
    }
    return m;
  }
}
