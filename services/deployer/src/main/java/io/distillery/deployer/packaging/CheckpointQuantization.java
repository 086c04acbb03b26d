package io.distillery.deployer.packaging;

import com.fasterxml.jackson.databind.JsonNode;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * How a checkpoint's linear weights are stored, read from the {@code quantization_config} of its
 * {@code config.json} (compressed-tensors, as the quantizer writes it, and the formats it wrote
 * before issue 17), and the 2:4 sparsity it declares. A checkpoint without {@code
 * quantization_config} is dense. Whether a serving target can run it is decided by {@link
 * GpuTargets}; the local CPU target runs every layout the model core's reader decodes.
 *
 * @param scheme a short id: none, w4a16 (and w2a16, w3a16, w8a16 for other packed widths), w8a8,
 *     fp8, or w8a16-int-quantized (weight-only INT8 as this platform wrote it before issue 17: vLLM
 *     refuses it)
 * @param format compressed-tensors' format (pack-quantized, int-quantized, naive-quantized,
 *     float-quantized) or "dense"
 * @param bits weight bits (32 for a dense checkpoint)
 * @param groupSize input columns per scale: > 0 per group, -1 per output channel, 0 dense
 * @param zeroPoint whether weights carry zero points (asymmetric)
 * @param sparsity the declared {@code sparsity_structure} (e.g. 2:4), or null
 */
public record CheckpointQuantization(
    String scheme, String format, int bits, int groupSize, boolean zeroPoint, String sparsity) {

  public static final CheckpointQuantization DENSE =
      new CheckpointQuantization("none", "dense", 32, 0, false, null);

  public boolean quantized() {
    return !scheme.equals("none");
  }

  /**
   * Reads {@code quantization_config} of a parsed {@code config.json}; IllegalArgumentException
   * when it declares a method or layout this platform does not write.
   */
  public static CheckpointQuantization of(JsonNode config) {
    JsonNode q = config.get("quantization_config");
    if (q == null || q.isNull()) {
      return DENSE;
    }
    String method = q.path("quant_method").asText("");
    if (!method.equals("compressed-tensors")) {
      throw new IllegalArgumentException(
          "quantization_config.quant_method '"
              + method
              + "' is not supported; the deployer serves dense and compressed-tensors checkpoints");
    }
    JsonNode s = q.path("sparsity_config");
    String sparsity =
        s.hasNonNull("sparsity_structure") ? s.path("sparsity_structure").asText() : null;
    JsonNode groups = q.path("config_groups");
    if (!groups.elements().hasNext()) {
      return new CheckpointQuantization("none", "dense", 32, 0, false, sparsity);
    }
    if (groups.size() > 1) {
      throw new IllegalArgumentException(
          "quantization_config has "
              + groups.size()
              + " config_groups; the "
              + "platform writes one scheme for all linear layers");
    }
    JsonNode group = groups.elements().next();
    String format =
        group.hasNonNull("format") ? group.path("format").asText() : q.path("format").asText("");
    JsonNode w = group.path("weights");
    int bits = w.path("num_bits").asInt(0);
    String strategy =
        w.path("strategy").asText(w.path("group_size").asInt(-1) > 0 ? "group" : "channel");
    int groupSize = strategy.equals("group") ? w.path("group_size").asInt(0) : -1;
    boolean zeroPoint = !w.path("symmetric").asBoolean(true);
    boolean input = group.hasNonNull("input_activations");
    return switch (format) {
      case "pack-quantized" ->
          new CheckpointQuantization(
              "w" + bits + "a16", format, bits, groupSize, zeroPoint, sparsity);
      case "int-quantized" ->
          new CheckpointQuantization(
              input ? "w8a8" : "w8a16-int-quantized", format, 8, -1, false, sparsity);
      case "naive-quantized", "float-quantized" -> {
        if (!"float".equals(w.path("type").asText())) {
          throw new IllegalArgumentException(
              "compressed-tensors format '"
                  + format
                  + "' with int weights is not "
                  + "written by this platform");
        }
        yield new CheckpointQuantization("fp8", format, 8, -1, false, sparsity);
      }
      default ->
          throw new IllegalArgumentException(
              "compressed-tensors format '" + format + "' is not supported");
    };
  }

  /** Lineage for manifest.json. */
  public Map<String, Object> describe() {
    Map<String, Object> m = new LinkedHashMap<>();
    m.put("scheme", scheme);
    m.put("format", format);
    m.put("bits", bits);
    if (groupSize != 0) {
      m.put("groupSize", groupSize);
    }
    m.put("zeroPoint", zeroPoint);
    if (sparsity != null) {
      m.put("sparsity", sparsity);
    }
    return m;
  }
}
