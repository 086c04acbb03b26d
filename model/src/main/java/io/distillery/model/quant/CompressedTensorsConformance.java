package io.distillery.model.quant;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.distillery.model.config.LlamaConfig;
import io.distillery.model.config.LlamaTensorNames;
import io.distillery.model.safetensors.Checkpoint;
import io.distillery.model.safetensors.DType;
import io.distillery.model.safetensors.TensorInfo;
import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashSet;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * Checks a compressed-tensors checkpoint against the rules the reference library validates and
 * vLLM's loader applies, transcribed (not copied) from their sources, independently of {@link
 * CompressedTensors}'s writer: the tests run the writer's output through it, and the deployer
 * refuses a GPU package that breaks a rule. Each violation names the source file and condition it
 * comes from. Sources and revisions: docs/formats.md.
 *
 * <ul>
 *   <li>CT = vllm-project/compressed-tensors 0.12.2 .. 0.18.0: {@code quantization/quant_args.py}
 *       and {@code quant_scheme.py} ({@code extra="forbid"}), {@code compressors/format.py} (format
 *       choice).
 *   <li>vLLM = vllm-project/vllm {@code
 *       model_executor/layers/quantization/compressed_tensors/compressed_tensors.py} ({@code
 *       _quantization_scheme_map_from_config}, {@code _get_scheme_from_parts}, {@code
 *       get_quant_method}), {@code utils.py} ({@code should_ignore_layer}), {@code
 *       schemes/compressed_tensors_wNa16.py}, {@code compressed_tensors_w8a8_int8.py}, {@code
 *       compressed_tensors_w8a16_fp8.py}.
 * </ul>
 */
public final class CompressedTensorsConformance {

  /**
   * CT quant_args.py QuantizationArgs fields (extra="forbid") as of 0.12.2; scale_dtype/zp_dtype
   * only from 0.13.
   */
  public static final Set<String> ARGS_KEYS =
      Set.of(
          "num_bits",
          "type",
          "symmetric",
          "group_size",
          "strategy",
          "block_structure",
          "dynamic",
          "actorder",
          "observer",
          "observer_kwargs");

  /** CT quant_scheme.py QuantizationScheme fields (extra="forbid"); {@code format} since 0.11. */
  public static final Set<String> SCHEME_KEYS =
      Set.of("targets", "weights", "input_activations", "output_activations", "format");

  /**
   * CT quant_config.py QuantizationConfig fields plus what model_compressor.py update_config adds.
   */
  public static final Set<String> CONFIG_KEYS =
      Set.of(
          "config_groups",
          "quant_method",
          "kv_cache_scheme",
          "format",
          "quantization_status",
          "global_compression_ratio",
          "ignore",
          "version",
          "sparsity_config",
          "transform_config");

  /** vLLM compressed_tensors/utils.py is_activation_quantization_format. */
  public static final Set<String> ACTIVATION_FORMATS =
      Set.of("naive-quantized", "int-quantized", "float-quantized", "nvfp4-pack-quantized");

  /**
   * vLLM schemes/compressed_tensors_wNa16.py WNA16_SUPPORTED_TYPES_MAP keys (uint4b8, uint8b128) in
   * 2025 releases.
   */
  public static final Set<Integer> WNA16_BITS = Set.of(4, 8);

  static final Set<String> STRATEGIES =
      Set.of("tensor", "channel", "group", "block", "token", "tensor_group", "attn_head");

  private static final ObjectMapper JSON = new ObjectMapper();

  private CompressedTensorsConformance() {}

  /** Every rule {@code dir} breaks; empty when vLLM's loader takes it. */
  public static List<String> violations(Path dir) throws IOException {
    JsonNode root = JSON.readTree(dir.resolve(LlamaConfig.FILE_NAME).toFile());
    LlamaConfig config = LlamaConfig.read(dir.resolve(LlamaConfig.FILE_NAME));
    List<String> out = new ArrayList<>();
    JsonNode q = root.path("quantization_config");
    if (q.isMissingNode() || q.isNull()) {
      return out;
    }
    if (!"compressed-tensors".equals(q.path("quant_method").asText())) {
      out.add("quant_method is '" + q.path("quant_method").asText() + "', not compressed-tensors");
      return out;
    }
    unknownKeys(
        q,
        CONFIG_KEYS,
        "quantization_config",
        "CT quant_config.py QuantizationConfig + " + "model_compressor.py update_config",
        out);
    JsonNode groups = q.path("config_groups");
    String topFormat = q.path("format").asText(null);
    Set<String> ignore = new HashSet<>();
    q.path("ignore").forEach(n -> ignore.add(n.asText()));
    JsonNode weights = null;
    JsonNode input = null;
    String format = topFormat;
    if (groups.size() > 1) {
      out.add(
          "more than one config group: this checker (and Distillery's reader) takes one scheme for all Linear");
    }
    for (Iterator<Map.Entry<String, JsonNode>> it = groups.fields(); it.hasNext(); ) {
      Map.Entry<String, JsonNode> e = it.next();
      JsonNode g = e.getValue();
      String where = "config_groups." + e.getKey();
      unknownKeys(g, SCHEME_KEYS, where, "CT quant_scheme.py QuantizationScheme extra=forbid", out);
      if (!g.path("targets").isArray() || g.path("targets").isEmpty()) {
        out.add(
            where
                + ".targets must be a non-empty list (CT quant_scheme.py QuantizationScheme.targets)");
      }
      if (!g.path("output_activations").isNull() && !g.path("output_activations").isMissingNode()) {
        out.add(
            where
                + ".output_activations set: vLLM compressed_tensors.py has no scheme for output quantization");
      }
      weights = g.path("weights");
      input = g.path("input_activations");
      if (g.hasNonNull("format")) {
        format = g.path("format").asText(); // vLLM: a group's format overrides the top-level one
      }
      args(weights, where + ".weights", out);
      if (input.isObject()) {
        args(input, where + ".input_activations", out);
      }
    }
    if (weights == null || weights.isMissingNode()) {
      sparsity(dir, config, q, out);
      return out; // no quantization: a dense checkpoint with an optional sparsity_config
    }
    boolean hasInput = input != null && input.isObject();
    boolean floatWeights = "float".equals(weights.path("type").asText("int"));
    int bits = weights.path("num_bits").asInt(8);
    String strategy = weights.path("strategy").asText("tensor");

    String expected =
        floatWeights
            ? (hasInput ? "float-quantized" : "naive-quantized")
            : hasInput ? "int-quantized" : "pack-quantized";
    if (!expected.equals(format)) {
      out.add(
          "format is '"
              + format
              + "' but compressed-tensors writes '"
              + expected
              + "' for "
              + (floatWeights ? "float" : "int")
              + " weights "
              + (hasInput ? "with" : "without")
              + " input activations"
              + " (CT compressors/format.py priority int-quantized, pack-quantized, float-quantized, naive-quantized with "
              + "each compressor's can_compress)");
    }
    if (ACTIVATION_FORMATS.contains(format) && !hasInput && !floatWeights) {
      out.add(
          "format '"
              + format
              + "' with input_activations null needs float weights: vLLM compressed_tensors.py "
              + "_quantization_scheme_map_from_config asserts weights.type == QuantizationType.FLOAT");
    }
    String scheme = vllmScheme(format, weights, input, hasInput, floatWeights, bits, strategy, out);
    if (!ignore.contains(LlamaTensorNames.LM_HEAD_MODULE)) {
      out.add(
          "ignore lacks lm_head: vLLM compressed_tensors.py get_quant_method quantizes LinearBase only, and "
              + "llm-compressor always writes ignore: [lm_head]");
    }
    try {
      VllmConstraints.checkFusedShards(ignore);
    } catch (IllegalArgumentException e) {
      out.add(e.getMessage());
    }
    tensors(dir, config, ignore, scheme, bits, strategy, weights, bitmaskTargets(q, config), out);
    sparsity(dir, config, q, out);
    return out;
  }

  /**
   * vLLM _get_scheme_from_parts: the scheme class that would load these weights, or null with a
   * violation.
   */
  private static String vllmScheme(
      String format,
      JsonNode w,
      JsonNode input,
      boolean hasInput,
      boolean floatWeights,
      int bits,
      String strategy,
      List<String> out) {
    boolean dynamic = w.path("dynamic").asBoolean(false);
    boolean symmetric = w.path("symmetric").asBoolean(true);
    if ("pack-quantized".equals(format)) {
      if (hasInput
          || floatWeights
          || dynamic
          || !(strategy.equals("group") || strategy.equals("channel"))) {
        out.add(
            "pack-quantized needs int weights, static, strategy group or channel, no input activations "
                + "(vLLM compressed_tensors.py _is_wNa16_group_channel)");
        return null;
      }
      if (!WNA16_BITS.contains(bits)) {
        out.add(
            "pack-quantized weights of "
                + bits
                + " bits: vLLM schemes/compressed_tensors_wNa16.py takes "
                + WNA16_BITS
                + " (WNA16_SUPPORTED_TYPES_MAP); compressed_tensors.py raises 'No compressed-tensors "
                + "compatible scheme was found'");
        return null;
      }
      return symmetric
          ? "CompressedTensorsWNA16"
          : "CompressedTensorsWNA16(zero points, vLLM PR #14211+)";
    }
    if (!floatWeights && hasInput) {
      boolean staticTensor =
          bits == 8
              && input.path("num_bits").asInt(8) == 8
              && (strategy.equals("channel") || strategy.equals("tensor"))
              && symmetric
              && !dynamic
              && "tensor".equals(input.path("strategy").asText())
              && !input.path("dynamic").asBoolean(false)
              && "int".equals(input.path("type").asText("int"));
      if (!staticTensor) {
        out.add(
            "int weights with input activations are not static per-tensor W8A8 (vLLM compressed_tensors.py "
                + "_is_static_tensor_w8a8)");
        return null;
      }
      return "CompressedTensorsW8A8Int8";
    }
    if (floatWeights) {
      boolean fp8 =
          bits == 8
              && symmetric
              && !dynamic
              && (strategy.equals("channel")
                  || strategy.equals("tensor")
                  || strategy.equals("block"));
      if (!fp8) {
        out.add(
            "float weights are not static symmetric 8-bit tensor/channel/block (vLLM compressed_tensors.py "
                + "_is_fp8_w8a16)");
        return null;
      }
      return hasInput ? "CompressedTensorsW8A8Fp8" : "CompressedTensorsW8A16Fp8";
    }
    out.add(
        "no vLLM scheme matches (compressed_tensors.py _get_scheme_from_parts raises NotImplementedError)");
    return null;
  }

  private static void tensors(
      Path dir,
      LlamaConfig config,
      Set<String> ignore,
      String scheme,
      int bits,
      String strategy,
      JsonNode w,
      Set<String> bitmask,
      List<String> out)
      throws IOException {
    Map<String, long[]> shapes = LlamaTensorNames.shapes(config);
    DType modelDtype = QuantizationScheme.modelDtype(config);
    try (Checkpoint file = Checkpoint.open(dir)) {
      for (String dense : List.of(LlamaTensorNames.EMBED_TOKENS, LlamaTensorNames.LM_HEAD)) {
        if (!shapes.containsKey(dense)) {
          continue; // tied lm_head
        }
        String module = dense.substring(0, dense.length() - ".weight".length());
        if (!file.contains(dense)
            || !file.info(dense).dtype().isFloatingPoint()
            || file.contains(module + ".weight_packed")
            || file.contains(module + ".weight_scale")) {
          out.add(
              module
                  + " is quantized or missing: vLLM ParallelLMHead / VocabParallelEmbedding load a plain "
                  + "float weight only (compressed_tensors.py get_quant_method: LinearBase, Attention, FusedMoE)");
        }
      }
      for (String m : LlamaTensorNames.linearModules(config)) {
        if (m.equals(LlamaTensorNames.LM_HEAD_MODULE)) {
          continue;
        }
        long outF = shapes.get(LlamaTensorNames.weight(m))[0];
        long inF = shapes.get(LlamaTensorNames.weight(m))[1];
        if (ignore.contains(m)) {
          if (!file.contains(m + ".weight")
              || !file.info(m + ".weight").dtype().isFloatingPoint()) {
            out.add(
                m
                    + " is in ignore but has no float weight (vLLM loads ignored layers unquantized)");
          }
          continue;
        }
        if (scheme == null) {
          continue;
        }
        if (scheme.startsWith("CompressedTensorsWNA16")) {
          int pack = 32 / bits;
          String src = " (vLLM schemes/compressed_tensors_wNa16.py create_weights)";
          expect(file, m + ".weight_packed", DType.I32, new long[] {outF, inF / pack}, src, out);
          if (inF % pack != 0) {
            out.add(
                m + ": in_features " + inF + " is not a multiple of the pack factor " + pack + src);
          }
          long groups = strategy.equals("channel") ? 1 : inF / w.path("group_size").asLong(inF);
          expect(
              file,
              m + ".weight_scale",
              modelDtype,
              new long[] {outF, groups},
              src + " (params_dtype)",
              out);
          expect(file, m + ".weight_shape", DType.I64, new long[] {2}, src, out);
          boolean symmetric = w.path("symmetric").asBoolean(true);
          if (!symmetric) {
            if (outF % pack != 0) {
              out.add(
                  m
                      + ": out_features "
                      + outF
                      + " is not a multiple of the pack factor "
                      + pack
                      + " that zero points are packed by"
                      + src);
            }
            expect(
                file,
                m + ".weight_zero_point",
                DType.I32,
                new long[] {(outF + pack - 1) / pack, groups},
                src,
                out);
          } else if (file.contains(m + ".weight_zero_point")) {
            out.add(m + ".weight_zero_point present in a symmetric checkpoint" + src);
          }
          if (file.contains(m + ".weight")) {
            out.add(m + ".weight present next to weight_packed" + src);
          }
        } else {
          boolean fp8 = scheme.contains("Fp8");
          String src =
              fp8
                  ? " (vLLM schemes/compressed_tensors_w8a16_fp8.py create_weights)"
                  : " (vLLM schemes/compressed_tensors_w8a8_int8.py create_weights)";
          if (!bitmask.contains(m)) { // else its codes are checked by sparsity()
            expect(
                file,
                m + ".weight",
                fp8 ? DType.F8_E4M3 : DType.I8,
                new long[] {outF, inF},
                src,
                out);
          }
          long[] scale = strategy.equals("channel") ? new long[] {outF, 1} : new long[] {1};
          expect(file, m + ".weight_scale", null, scale, src, out);
          if (scheme.equals("CompressedTensorsW8A8Int8")
              || scheme.equals("CompressedTensorsW8A8Fp8")) {
            expect(file, m + ".input_scale", null, new long[] {1}, src + " (static input)", out);
          }
        }
      }
    }
  }

  private static void expect(
      Checkpoint file, String name, DType dtype, long[] shape, String src, List<String> out)
      throws IOException {
    if (!file.contains(name)) {
      out.add(name + " is missing" + src);
      return;
    }
    TensorInfo info = file.info(name);
    if (dtype != null && info.dtype() != dtype) {
      out.add(name + " is " + info.dtype() + ", expected " + dtype + src);
    }
    if (dtype == null && !info.dtype().isFloatingPoint()) {
      out.add(name + " is " + info.dtype() + ", expected a float scale" + src);
    }
    if (!Arrays.equals(info.shape(), shape)) {
      out.add(
          name
              + " has shape "
              + Arrays.toString(info.shape())
              + ", expected "
              + Arrays.toString(shape)
              + src);
    }
  }

  /**
   * CT quant_args.py QuantizationArgs: known keys only (extra="forbid") and the validators' value
   * rules.
   */
  private static void args(JsonNode a, String where, List<String> out) {
    unknownKeys(
        a,
        ARGS_KEYS,
        where,
        "CT quant_args.py QuantizationArgs extra=forbid (0.12.2 key set)",
        out);
    String type = a.path("type").asText("int");
    if (!type.equals("int") && !type.equals("float")) {
      out.add(
          where + ".type '" + type + "' is not int or float (CT quant_args.py QuantizationType)");
    }
    String strategy = a.path("strategy").asText("tensor");
    if (!STRATEGIES.contains(strategy)) {
      out.add(
          where
              + ".strategy '"
              + strategy
              + "' is unknown (CT quant_args.py QuantizationStrategy)");
    }
    JsonNode group = a.path("group_size");
    if (strategy.equals("group") && (!group.isInt() || group.asInt() <= 0)) {
      out.add(
          where + ": strategy group needs group_size > 0 (CT quant_args.py validate_model_after)");
    }
    if (strategy.equals("channel") && group.isInt() && group.asInt() != -1) {
      out.add(
          where
              + ": strategy channel with group_size "
              + group.asInt()
              + " (CT quant_args.py: group_size -1 "
              + "or null means channel)");
    }
    if (type.equals("float")
        && a.path("num_bits").asInt(8) != 8
        && a.path("num_bits").asInt(8) != 4) {
      out.add(
          where + ": float weights are FP8 or FP4 only (CT quant_args.py validate_model_after)");
    }
    if (!a.path("actorder").isNull()
        && !a.path("actorder").isMissingNode()
        && !strategy.equals("group")) {
      out.add(where + ": actorder needs strategy group (CT quant_args.py validate_model_after)");
    }
  }

  /**
   * The modules a sparse-24-bitmask {@code sparsity_config} stores compressed (empty otherwise).
   */
  private static Set<String> bitmaskTargets(JsonNode q, LlamaConfig config) {
    JsonNode s = q.path("sparsity_config");
    if (!Sparse24Bitmask.FORMAT.equals(s.path("format").asText())) {
      return Set.of();
    }
    return Sparse24Bitmask.targets(s, config);
  }

  /**
   * CT config/base.py SparsityCompressionConfig: an empty object, or a known format with 2:4
   * structure; for {@code sparse-24-bitmask}, the layout of CT sparse_24_bitmask.py as vLLM's
   * CompressedTensors24 registers it, and vLLM's rule for which layers it runs so.
   */
  private static void sparsity(Path dir, LlamaConfig config, JsonNode q, List<String> out)
      throws IOException {
    JsonNode s = q.path("sparsity_config");
    if (s.isMissingNode() || s.isNull() || s.isEmpty()) {
      return;
    }
    String format = s.path("format").asText("");
    if (!format.equals(Sparse24Bitmask.DENSE) && !format.equals(Sparse24Bitmask.FORMAT)) {
      out.add(
          "sparsity_config.format '"
              + format
              + "' is not dense or sparse-24-bitmask (CT config/dense.py, "
              + "sparse_24_bitmask.py; vLLM compressed_tensors.py supports_cutlass_24)");
    }
    if (!s.path("targets").isArray()) {
      out.add("sparsity_config.targets must be a list of module names (CT config/base.py)");
    }
    boolean bitmask = format.equals(Sparse24Bitmask.FORMAT);
    Set<String> targets = bitmask ? Sparse24Bitmask.targets(s, config) : Set.of();
    if (bitmask) {
      String refusal = Sparse24Bitmask.vllmRefusal(q);
      if (refusal != null) {
        out.add("sparsity_config.format sparse-24-bitmask: " + refusal);
      }
      if (targets.isEmpty()) {
        out.add("sparsity_config.targets match no linear module (CT config/base.py targets)");
      }
    }
    boolean floatCodes = false;
    boolean quantized = false;
    for (JsonNode g : q.path("config_groups")) {
      if (g.path("weights").isObject()) {
        quantized = true;
        floatCodes = "float".equals(g.path("weights").path("type").asText());
      }
    }
    DType values =
        !quantized ? QuantizationScheme.modelDtype(config) : floatCodes ? DType.F8_E4M3 : DType.I8;
    Map<String, long[]> shapes = LlamaTensorNames.shapes(config);
    String src = " (vLLM schemes/compressed_tensors_24.py CompressedTensors24.create_weights)";
    try (Checkpoint file = Checkpoint.open(dir)) {
      for (String m : LlamaTensorNames.linearModules(config)) {
        boolean stored = Sparse24Bitmask.isCompressed(file, m);
        if (!targets.contains(m)) {
          if (stored) {
            out.add(
                m
                    + " is stored sparse-24-bitmask but is no sparse-24-bitmask target of "
                    + "sparsity_config: vLLM's get_scheme gives it no CompressedTensors24, so "
                    + "nothing loads its compressed/bitmask/shape");
          }
          continue;
        }
        long outF = shapes.get(LlamaTensorNames.weight(m))[0];
        long inF = shapes.get(LlamaTensorNames.weight(m))[1];
        if (file.contains(m + ".weight")) {
          out.add(m + ".weight present next to the sparse-24-bitmask tensors" + src);
        }
        int before = out.size();
        expect(file, m + ".shape", DType.I64, new long[] {2, 1}, src, out);
        expect(file, m + ".compressed", values, new long[] {outF, inF / 2}, src, out);
        expect(file, m + ".bitmask", DType.U8, new long[] {outF, inF / 8}, src, out);
        if (inF % 8 != 0) {
          out.add(
              m
                  + ": in_features "
                  + inF
                  + " is not a multiple of 8: CT packs the bitmask to ceil(in / 8) bytes a row, "
                  + "vLLM registers in // 8"
                  + src);
        }
        if (outF % 8 != 0) {
          out.add(
              m
                  + ": out_features "
                  + outF
                  + " is not divisible by 8 ('All partitions must be divisible by 8 for 2:4 "
                  + "sparse compressed models')"
                  + src);
        }
        if (out.size() == before) {
          twoOfFour(file, m, (int) outF, (int) inF, out);
        }
      }
    }
  }

  /**
   * Every group of 4 columns keeps exactly 2: CT decompression needs in / 2 marks a row, and vLLM
   * re-compresses the decompressed weight with ops.cutlass_sparse_compress, a 2:4 kernel format.
   */
  private static void twoOfFour(Checkpoint file, String m, int rows, int cols, List<String> out)
      throws IOException {
    byte[] mask = file.bytes(m + ".bitmask");
    int perRow = Sparse24Bitmask.bytesPerRow(cols);
    for (int r = 0; r < rows; r++) {
      for (int g = 0; g < cols; g += 4) {
        int kept = 0;
        for (int c = g; c < g + 4; c++) {
          kept += (mask[r * perRow + c / 8] >> (c % 8)) & 1;
        }
        if (kept != 2) {
          out.add(
              m
                  + ".bitmask marks "
                  + kept
                  + " of columns "
                  + g
                  + ".."
                  + (g + 3)
                  + " in row "
                  + r
                  + "; a 2:4 layout keeps exactly 2 (CT sparse_24_bitmask.py get_24_bytemasks; vLLM "
                  + "compressed_tensors_24.py ops.cutlass_sparse_compress)");
          return;
        }
      }
    }
  }

  private static void unknownKeys(
      JsonNode node, Set<String> known, String where, String rule, List<String> out) {
    for (Iterator<String> it = node.fieldNames(); it.hasNext(); ) {
      String key = it.next();
      if (!known.contains(key)) {
        out.add(where + " has unknown key '" + key + "' (" + rule + ")");
      }
    }
  }
}
