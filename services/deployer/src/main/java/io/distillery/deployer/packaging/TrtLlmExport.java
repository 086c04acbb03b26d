package io.distillery.deployer.packaging;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.distillery.model.config.LlamaConfig;
import io.distillery.model.config.LlamaTensorNames;
import io.distillery.model.quant.CompressedTensors;
import io.distillery.model.quant.QuantizationScheme;
import io.distillery.model.quant.QuantizedWeight;
import io.distillery.model.safetensors.Checkpoint;
import io.distillery.model.safetensors.DType;
import io.distillery.model.safetensors.SafetensorsWriter;
import io.distillery.model.safetensors.TensorData;
import io.distillery.model.safetensors.TensorSource;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.SequencedMap;

/**
 * The checkpoint in the pre-quantized form TensorRT-LLM loads without recalibrating: a
 * ModelOpt-style Hugging Face export, i.e. {@code config.json} without {@code quantization_config}
 * plus {@code hf_quant_config.json}, which {@code llmapi/llm_utils.py} {@code
 * ModelLoader._update_from_hf_quant_config} (and {@code _torch/model_config.py}) read: {@code
 * quant_algo}, {@code group_size}, {@code has_zero_point}, {@code pre_quant_scale}, {@code
 * exclude_modules}. Layout of {@code W4A16_AWQ} ({@code _torch/modules/linear.py}
 * W4A16_AWQ_LinearMethod, and ModelOpt's {@code export/quant_utils.py} {@code pack_int4_in_uint8}):
 *
 * <ul>
 *   <li>{@code <m>.weight} int8 {@code [out/2, in]}: two signed 4-bit codes per byte packed along
 *       the output dim, {@code byte[j, k] = (q[2j, k] & 0xF) | (q[2j+1, k] << 4)}, two's
 *       complement, no offset (the loader transposes it to {@code [in, out/2]} and calls {@code
 *       preprocess_weights_for_mixed_gemm(..., quint4x2)});
 *   <li>{@code <m>.weight_scale} model dtype {@code [out, in/group]} (transposed on load); x = q *
 *       s;
 *   <li>{@code <m>.pre_quant_scale} model dtype {@code [in]} for the layers that do not share their
 *       input (o_proj, down_proj: {@code load_weights_vanilla} reads it); ones here, AWQ's scales
 *       being folded already.
 * </ul>
 *
 * A dense checkpoint is exported as it is, without any quantization config. Activations run in bf16
 * or fp16: a float32 model's dense tensors and scales are written bf16.
 */
public final class TrtLlmExport {

  public static final String DIR = "trtllm";
  public static final String QUANT_CONFIG = "hf_quant_config.json";

  private static final ObjectMapper JSON =
      new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT);

  private TrtLlmExport() {}

  /**
   * Writes the export of {@code modelDir} into {@code out}.
   *
   * @param quantAlgo {@code W4A16_AWQ}, or null for a dense checkpoint
   */
  public static void write(Path modelDir, Path out, String quantAlgo) throws IOException {
    LlamaConfig config = LlamaConfig.read(modelDir.resolve(LlamaConfig.FILE_NAME));
    DType dtype =
        QuantizationScheme.modelDtype(config) == DType.F32
            ? DType.BF16
            : QuantizationScheme.modelDtype(config);
    Files.createDirectories(out);
    Map<String, QuantizedWeight> quantized =
        quantAlgo == null ? Map.of() : CompressedTensors.readQuantized(modelDir);
    SequencedMap<String, TensorSource> tensors = new LinkedHashMap<>();
    try (Checkpoint file = Checkpoint.open(modelDir)) {
      for (Map.Entry<String, long[]> e : LlamaTensorNames.shapes(config).entrySet()) {
        String name = e.getKey();
        String module =
            name.endsWith(".weight") ? name.substring(0, name.length() - ".weight".length()) : null;
        QuantizedWeight q = module == null ? null : quantized.get(module);
        if (q == null) {
          tensors.put(name, TensorData.ofFloats(dtype, e.getValue(), file.floats(name)));
          continue;
        }
        if (q.zeroPoints() != null || q.kind() != QuantizedWeight.Kind.INT4_GROUP) {
          throw new IllegalArgumentException(
              module + " is not symmetric INT4: no W4A16_AWQ layout for it");
        }
        tensors.put(
            name,
            TensorData.ofBytes(DType.I8, new long[] {q.rows() / 2, q.cols()}, packAlongRows(q)));
        tensors.put(
            module + ".weight_scale",
            TensorData.ofFloats(dtype, new long[] {q.rows(), q.groups()}, q.scales()));
        if (module.endsWith(".o_proj") || module.endsWith(".down_proj")) {
          float[] ones = new float[q.cols()];
          Arrays.fill(ones, 1f);
          tensors.put(
              module + ".pre_quant_scale", TensorData.ofFloats(dtype, new long[] {q.cols()}, ones));
        }
      }
    }
    SafetensorsWriter.write(out.resolve(Checkpoint.SINGLE_FILE), tensors, Map.of("format", "pt"));
    config.withTorchDtype(dtype.torchName()).write(out);
    if (quantAlgo != null) {
      ObjectNode root = JSON.createObjectNode();
      ObjectNode producer = root.putObject("producer");
      producer.put("name", "distillery");
      producer.put("version", "modelopt-hf-export-layout");
      ObjectNode quantization = root.putObject("quantization");
      quantization.put("quant_algo", quantAlgo);
      quantization.putNull("kv_cache_quant_algo");
      int groupSize = quantized.values().iterator().next().groupSize();
      quantization.put("group_size", groupSize);
      quantization.put("has_zero_point", false);
      quantization.put("pre_quant_scale", true);
      ArrayNode exclude = quantization.putArray("exclude_modules");
      for (String m : LlamaTensorNames.linearModules(config)) {
        if (!quantized.containsKey(m)) {
          exclude.add(m);
        }
      }
      Files.writeString(
          out.resolve(QUANT_CONFIG), JSON.writeValueAsString(root) + "\n", StandardCharsets.UTF_8);
    }
  }

  /**
   * ModelOpt's pack_int4_in_uint8: rows 2j (low nibble) and 2j + 1 (high nibble) of each column
   * share a byte.
   */
  static byte[] packAlongRows(QuantizedWeight q) {
    if (q.rows() % 2 != 0) {
      throw new IllegalArgumentException(
          "out_features " + q.rows() + " is odd: W4A16_AWQ packs two rows per byte");
    }
    int cols = q.cols();
    byte[] out = new byte[q.rows() / 2 * cols];
    int[] codes = q.codes();
    for (int j = 0; j < q.rows() / 2; j++) {
      for (int k = 0; k < cols; k++) {
        int lo = codes[2 * j * cols + k] & 0xF;
        int hi = codes[(2 * j + 1) * cols + k] & 0xF;
        out[j * cols + k] = (byte) (lo | hi << 4);
      }
    }
    return out;
  }

  /**
   * The codes of {@link #packAlongRows}'s output, {@code [rows, cols]}, sign-extended (for tests
   * and checks).
   */
  static int[] unpackAlongRows(byte[] packed, int rows, int cols) {
    int[] out = new int[rows * cols];
    for (int j = 0; j < rows / 2; j++) {
      for (int k = 0; k < cols; k++) {
        int b = packed[j * cols + k];
        out[2 * j * cols + k] = (b << 28) >> 28;
        out[(2 * j + 1) * cols + k] = (b << 24) >> 28;
      }
    }
    return out;
  }
}
