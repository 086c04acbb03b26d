package io.distillery.model.quant;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.distillery.model.CorruptCheckpointException;
import io.distillery.model.config.LlamaConfig;
import io.distillery.model.config.LlamaTensorNames;
import io.distillery.model.safetensors.Checkpoint;
import io.distillery.model.safetensors.DType;
import io.distillery.model.safetensors.ShardedCheckpointWriter;
import io.distillery.model.safetensors.TensorCodec;
import io.distillery.model.safetensors.TensorData;
import io.distillery.model.safetensors.TensorInfo;
import io.distillery.model.safetensors.TensorSource;
import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.SequencedMap;
import java.util.Set;
import java.util.regex.Pattern;

/**
 * compressed-tensors' {@code sparse-24-bitmask} layout of 2:4-sparse linear weights, written and
 * read as the reference does, and the rule for when vLLM runs it. Followed from the sources
 * (revisions in docs/formats.md; read, not copied):
 *
 * <ul>
 *   <li>compressed-tensors 0.12.2 .. 0.14.0.1 {@code
 *       compressors/sparse_compressors/sparse_24_bitmask.py} ({@code Sparse24BitMaskCompressor},
 *       {@code sparse24_bitmask_compress}, {@code get_24_bytemasks}, {@code
 *       Sparse24BitMaskTensor.dict}), {@code utils/helpers.py} ({@code pack_bitmasks}: {@code
 *       numpy.packbits(axis=-1, bitorder="little")}), {@code config/sparse_24_bitmask.py}, {@code
 *       compressors/model_compressors/model_compressor.py} ({@code compress_model}: quantization
 *       first, sparsity second). compressed-tensors 0.15.0 removed the sparse compressors (PR #610,
 *       "legacy format"): only releases up to 0.14 can decompress this layout.
 *   <li>vLLM {@code model_executor/layers/quantization/compressed_tensors/compressed_tensors.py}
 *       ({@code get_scheme}, {@code supports_cutlass_24}) and {@code
 *       schemes/compressed_tensors_24.py} ({@code CompressedTensors24.create_weights}: {@code
 *       shape} int64 {@code [2, 1]}, {@code compressed} {@code [out, in / 2]} in the weight dtype,
 *       {@code bitmask} uint8 {@code [out, in / 8]}, every output partition divisible by 8; compute
 *       capability 9.0). vLLM 0.19 turned {@code CompressedTensors24} into a stub raising "Sparse24
 *       models are no longer supported by vLLM" (PR #36799).
 * </ul>
 *
 * <p>Layout of one weight {@code <m>.weight} of shape {@code [rows, cols]} (row-major, groups of 4
 * consecutive values along a row): {@code <m>.shape} I64 {@code [2, 1]} = {rows, cols}; {@code
 * <m>.compressed} {@code [rows, cols / 2]} in the weight's own dtype, the two kept values of every
 * group in column order; {@code <m>.bitmask} U8 {@code [rows, ceil(cols / 8)]}, bit {@code c % 8}
 * (least significant first) of byte {@code c / 8} set when column {@code c} is kept. For a
 * quantized module the 2:4 compression applies to the stored codes ({@code weight} I8 or F8_E4M3)
 * and its {@code weight_scale} / {@code input_scale} stay as they are.
 *
 * <p>The reference keeps the two largest magnitudes of each group and silently drops the rest; this
 * writer refuses a group with more than two non-zero values instead, since dropping them would
 * change the model. Where a group has fewer than two non-zeros, zeros whose sign bit is set are
 * kept first, then the lowest columns, so a round trip is bit for bit unless a group holds more
 * than two negative zeros.
 */
public final class Sparse24Bitmask {

  /** compressed-tensors' {@code CompressionFormat.sparse_24_bitmask}. */
  public static final String FORMAT = "sparse-24-bitmask";

  /** compressed-tensors' {@code CompressionFormat.dense}: the weights stay uncompressed. */
  public static final String DENSE = "dense";

  /**
   * {@code Sparse24BitMaskCompressor.compression_param_names}, in the order the reference lists.
   */
  public static final List<String> PARAMS = List.of("shape", "compressed", "bitmask");

  /** The dtypes a weight can be compressed in: dense floats and 8-bit codes. */
  public static final Set<DType> DTYPES =
      Set.of(DType.F32, DType.F16, DType.BF16, DType.I8, DType.F8_E4M3);

  static final String SUPPORTS_CUTLASS_24 =
      "vLLM model_executor/layers/quantization/compressed_tensors/compressed_tensors.py "
          + "get_scheme / supports_cutlass_24";

  private static final ObjectMapper JSON =
      new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT);

  private Sparse24Bitmask() {}

  /**
   * One weight in the compressed layout.
   *
   * @param dtype the weight's dtype (of {@code values})
   * @param values {@code [rows, cols / 2]} kept values, raw little-endian bytes
   * @param bitmask {@code [rows, ceil(cols / 8)]} packed keep flags
   */
  public record Compressed(DType dtype, int rows, int cols, byte[] values, byte[] bitmask) {

    /** The three tensors the reference stores for {@code module}, by full name. */
    public SequencedMap<String, TensorSource> tensors(String module) {
      SequencedMap<String, TensorSource> out = new LinkedHashMap<>();
      out.put(
          module + ".shape",
          TensorData.ofBytes(DType.I64, new long[] {2, 1}, TensorCodec.longsToBytes(rows, cols)));
      out.put(
          module + ".compressed", TensorData.ofBytes(dtype, new long[] {rows, cols / 2}, values));
      out.put(
          module + ".bitmask",
          TensorData.ofBytes(DType.U8, new long[] {rows, bytesPerRow(cols)}, bitmask));
      return out;
    }
  }

  /** Bitmask bytes per row: {@code ceil(cols / 8)} ({@code numpy.packbits} pads the last byte). */
  public static int bytesPerRow(int cols) {
    return (cols + 7) / 8;
  }

  /**
   * Compresses one 2-D weight.
   *
   * @param module named in errors
   * @param dense {@code rows x cols} values of {@code dtype}, raw little-endian bytes
   * @throws IllegalArgumentException when {@code dtype} cannot be compressed, {@code cols} is not a
   *     multiple of 4, or a group of 4 holds more than 2 non-zero values
   */
  public static Compressed compress(String module, DType dtype, int rows, int cols, byte[] dense) {
    if (!DTYPES.contains(dtype)) {
      throw new IllegalArgumentException(
          module
              + ": a "
              + dtype
              + " weight cannot be stored sparse-24-bitmask; the layout takes "
              + DTYPES
              + " (dense weights, or 8-bit codes compressed after quantization: compressed-tensors "
              + "model_compressor.py compress_model)");
    }
    if (cols % 4 != 0) {
      throw new IllegalArgumentException(
          module
              + ": "
              + cols
              + " input columns are not a multiple of 4, so the weight has no 2:4 groups along its rows");
    }
    int size = dtype.byteSize();
    if ((long) rows * cols * size != dense.length) {
      throw new IllegalArgumentException(
          module
              + ": "
              + dense.length
              + " bytes for a "
              + dtype
              + " ["
              + rows
              + ", "
              + cols
              + "] weight");
    }
    int perRow = bytesPerRow(cols);
    byte[] values = new byte[Math.toIntExact((long) rows * (cols / 2) * size)];
    byte[] bitmask = new byte[rows * perRow];
    int v = 0;
    for (int r = 0; r < rows; r++) {
      for (int g = 0; g < cols; g += 4) {
        int base = (r * cols + g) * size;
        int keep = 0; // bit i: column g + i kept
        int nonZero = 0;
        for (int i = 0; i < 4; i++) {
          if (!isZero(dtype, dense, base + i * size)) {
            keep |= 1 << i;
            nonZero++;
          }
        }
        if (nonZero > 2) {
          throw new IllegalArgumentException(
              module
                  + " is not 2:4 sparse: row "
                  + r
                  + ", columns "
                  + g
                  + ".."
                  + (g + 3)
                  + " hold "
                  + nonZero
                  + " non-zero values; sparse-24-bitmask keeps 2 of every 4 (compressed-tensors "
                  + "sparse_24_bitmask.py get_24_bytemasks would silently drop the smallest)");
        }
        for (int pass = 0; pass < 2 && Integer.bitCount(keep) < 2; pass++) {
          for (int i = 0; i < 4 && Integer.bitCount(keep) < 2; i++) {
            boolean signedZero = !allBitsZero(dense, base + i * size, size);
            if ((keep & (1 << i)) == 0 && (pass == 1 || signedZero)) {
              keep |= 1 << i;
            }
          }
        }
        for (int i = 0; i < 4; i++) {
          if ((keep & (1 << i)) != 0) {
            System.arraycopy(dense, base + i * size, values, v, size);
            v += size;
            int c = g + i;
            bitmask[r * perRow + c / 8] |= (byte) (1 << (c % 8));
          }
        }
      }
    }
    return new Compressed(dtype, rows, cols, values, bitmask);
  }

  /**
   * The dense weight of a compressed one, raw bytes of {@code dtype}: each row's values go, in
   * order, to the columns whose bit is set; the other columns are zero.
   *
   * @throws IllegalArgumentException when the lengths disagree with the shape, or a row's bitmask
   *     does not mark exactly {@code cols / 2} columns
   */
  public static byte[] decompress(DType dtype, int rows, int cols, byte[] values, byte[] bitmask) {
    int size = dtype.byteSize();
    int perRow = bytesPerRow(cols);
    if (cols % 2 != 0 || values.length != (long) rows * (cols / 2) * size) {
      throw new IllegalArgumentException(
          "compressed holds "
              + values.length
              + " bytes; a ["
              + rows
              + ", "
              + cols
              + "] "
              + dtype
              + " weight needs ["
              + rows
              + ", "
              + cols / 2
              + "] kept values");
    }
    if (bitmask.length != (long) rows * perRow) {
      throw new IllegalArgumentException(
          "bitmask holds "
              + bitmask.length
              + " bytes; a ["
              + rows
              + ", "
              + cols
              + "] weight needs ["
              + rows
              + ", "
              + perRow
              + "]");
    }
    byte[] dense = new byte[Math.toIntExact((long) rows * cols * size)];
    int v = 0;
    for (int r = 0; r < rows; r++) {
      int kept = 0;
      for (int c = 0; c < cols; c++) {
        if ((bitmask[r * perRow + c / 8] & (1 << (c % 8))) != 0) {
          if (++kept > cols / 2) {
            break;
          }
          System.arraycopy(values, v, dense, (r * cols + c) * size, size);
          v += size;
        }
      }
      if (kept != cols / 2) {
        throw new IllegalArgumentException(
            "bitmask row "
                + r
                + " marks "
                + (kept > cols / 2 ? "more than " + cols / 2 : Integer.toString(kept))
                + " columns; compressed holds "
                + cols / 2
                + " values a row");
      }
    }
    return dense;
  }

  /** Whether {@code module}'s weight is stored in this layout ({@code <m>.bitmask} present). */
  public static boolean isCompressed(Checkpoint file, String module) {
    return file.contains(module + ".bitmask");
  }

  /**
   * The dense weight of a compressed module as stored (its dtype: a float type, or I8 / F8_E4M3
   * codes), shape {@code [rows, cols]}.
   *
   * @throws IllegalArgumentException when the three tensors disagree with each other
   */
  public static TensorData read(Checkpoint file, String module) throws CorruptCheckpointException {
    for (String p : PARAMS) {
      if (!file.contains(module + "." + p)) {
        throw new IllegalArgumentException(
            "tensor '" + module + "." + p + "' is missing next to " + module + ".bitmask");
      }
    }
    TensorInfo shapeInfo = file.info(module + ".shape");
    if (shapeInfo.dtype() != DType.I64 || shapeInfo.elementCount() != 2) {
      throw new IllegalArgumentException(
          "tensor '" + module + ".shape' is " + shapeInfo + "; expected two I64 values");
    }
    long[] shape = TensorCodec.bytesToLongs(file.bytes(module + ".shape"));
    int rows = Math.toIntExact(shape[0]);
    int cols = Math.toIntExact(shape[1]);
    TensorInfo values = file.info(module + ".compressed");
    TensorInfo mask = file.info(module + ".bitmask");
    if (mask.dtype() != DType.U8 && mask.dtype() != DType.I8) {
      throw new IllegalArgumentException(
          "tensor '" + module + ".bitmask' is " + mask.dtype() + "; expected U8");
    }
    if (!DTYPES.contains(values.dtype())) {
      throw new IllegalArgumentException(
          "tensor '"
              + module
              + ".compressed' is "
              + values.dtype()
              + "; expected one of "
              + DTYPES);
    }
    byte[] dense =
        decompress(
            values.dtype(),
            rows,
            cols,
            file.bytes(module + ".compressed"),
            file.bytes(module + ".bitmask"));
    return TensorData.ofBytes(values.dtype(), new long[] {rows, cols}, dense);
  }

  /**
   * Why vLLM cannot run the layers of {@code quantizationConfig} (a {@code quantization_config}
   * with a {@code sparsity_config}) in the compressed 2:4 layout, or null when it can. vLLM's
   * {@code get_scheme} hands a 2:4 layer to {@code CompressedTensors24} only when {@code
   * supports_cutlass_24} holds: no quantization, or 8-bit weights per tensor/channel with 8-bit
   * input activations per tensor/token; {@code CompressedTensors24._get_params_dtype} then needs
   * weights and activations both int (INT8) or both float (FP8). Any other layer goes to the scheme
   * of its quantization, whose parameters have no {@code compressed}/{@code bitmask}/{@code shape}
   * to load (and compressed-tensors itself writes 2:4 weight-only INT4/INT8 as {@code marlin-24},
   * deprecated and no longer run by vLLM: {@code config/format.py}).
   */
  public static String vllmRefusal(JsonNode quantizationConfig) {
    JsonNode s = quantizationConfig.path("sparsity_config");
    if (!"2:4".equals(s.path("sparsity_structure").asText())) {
      return "sparsity_structure is '"
          + s.path("sparsity_structure").asText()
          + "', not 2:4 (compressed-tensors sparse_24_bitmask.py asserts TWO_FOUR; "
          + SUPPORTS_CUTLASS_24
          + " needs 2:4)";
    }
    JsonNode groups = quantizationConfig.path("config_groups");
    if (!groups.elements().hasNext()) {
      return null; // sparse only: CompressedTensors24(quantized=False)
    }
    for (Iterator<Map.Entry<String, JsonNode>> it = groups.fields(); it.hasNext(); ) {
      Map.Entry<String, JsonNode> e = it.next();
      JsonNode w = e.getValue().path("weights");
      JsonNode in = e.getValue().path("input_activations");
      String where = "config_groups." + e.getKey();
      if (w.isMissingNode() || w.isNull()) {
        continue;
      }
      if (in.isMissingNode() || in.isNull()) {
        return where
            + " quantizes weights only ("
            + w.path("num_bits").asInt()
            + "-bit "
            + w.path("type").asText("int")
            + "): "
            + SUPPORTS_CUTLASS_24
            + " returns False for weight-only quantization, so vLLM loads these layers with the "
            + "weight-only scheme, which has no compressed/bitmask/shape parameters";
      }
      String ws = w.path("strategy").asText("tensor");
      String is = in.path("strategy").asText("tensor");
      if (!(ws.equals("tensor") || ws.equals("channel"))
          || !(is.equals("tensor") || is.equals("token"))
          || w.path("num_bits").asInt() != 8
          || in.path("num_bits").asInt() != 8) {
        return where
            + " has "
            + w.path("num_bits").asInt()
            + "-bit "
            + ws
            + " weights with "
            + in.path("num_bits").asInt()
            + "-bit "
            + is
            + " activations: "
            + SUPPORTS_CUTLASS_24
            + " takes 8-bit tensor/channel weights with 8-bit tensor/token activations only";
      }
      if (!w.path("type").asText("int").equals(in.path("type").asText("int"))) {
        return where
            + " mixes "
            + w.path("type").asText("int")
            + " weights with "
            + in.path("type").asText("int")
            + " activations: vLLM schemes/compressed_tensors_24.py _get_params_dtype raises "
            + "'Quantization type not supported by Cutlass'";
      }
    }
    return null;
  }

  /**
   * The linear modules a {@code sparsity_config} makes sparse: its {@code targets} (module names,
   * {@code re:} regular expressions, or the class name {@code Linear}) less its {@code ignore}, as
   * compressed-tensors' {@code match_named_modules} resolves them for a Llama model.
   */
  public static Set<String> targets(JsonNode sparsityConfig, LlamaConfig config) {
    Set<String> out = new LinkedHashSet<>();
    List<String> modules = LlamaTensorNames.linearModules(config);
    for (JsonNode t : sparsityConfig.path("targets")) {
      for (String m : modules) {
        if (matches(t.asText(), m)) {
          out.add(m);
        }
      }
    }
    for (JsonNode t : sparsityConfig.path("ignore")) {
      out.removeIf(m -> matches(t.asText(), m));
    }
    return out;
  }

  private static boolean matches(String target, String module) {
    if (target.equals("Linear")) {
      return true;
    }
    if (target.startsWith("re:")) {
      return Pattern.compile(target.substring(3)).matcher(module).matches();
    }
    return target.equals(module);
  }

  /**
   * Writes {@code source} (a checkpoint whose {@code sparsity_config} is 2:4 in format {@code
   * dense}) into the empty directory {@code out} with every sparse target's weight in this layout
   * and {@code sparsity_config.format} set to {@value #FORMAT}: what compressed-tensors' {@code
   * ModelCompressor.compress_model} writes with a {@code Sparse24BitMaskConfig}. Other tensors are
   * copied as they are; one tensor is in memory at a time. Other files (tokenizer) are not copied.
   *
   * @throws IllegalArgumentException when vLLM could not run the result ({@link #vllmRefusal}), a
   *     target's weight is missing, not 2-D, of another dtype, or not 2:4 sparse
   */
  public static void compressCheckpoint(Path source, Path out) throws IOException {
    Path configFile = source.resolve(LlamaConfig.FILE_NAME);
    JsonNode root = JSON.readTree(configFile.toFile());
    LlamaConfig config = LlamaConfig.read(configFile);
    JsonNode q = root.path("quantization_config");
    JsonNode s = q.path("sparsity_config");
    if (s.isMissingNode() || s.isNull() || s.isEmpty()) {
      throw new IllegalArgumentException(
          "the checkpoint declares no sparsity_config; only a 2:4-pruned checkpoint can be stored "
              + FORMAT);
    }
    if (!DENSE.equals(s.path("format").asText())) {
      throw new IllegalArgumentException(
          "sparsity_config.format is '" + s.path("format").asText() + "', expected dense");
    }
    String refusal = vllmRefusal(q);
    if (refusal != null) {
      throw new IllegalArgumentException(FORMAT + " refused: " + refusal);
    }
    Set<String> targets = targets(s, config);
    if (Files.exists(out)) {
      try (var entries = Files.list(out)) {
        if (entries.findAny().isPresent()) {
          throw new IllegalArgumentException(out + " is not empty");
        }
      }
    }
    try (Checkpoint file = Checkpoint.open(source);
        ShardedCheckpointWriter writer = new ShardedCheckpointWriter(out)) {
      for (String m : targets) {
        if (!file.contains(LlamaTensorNames.weight(m))) {
          throw new IllegalArgumentException(
              "sparse target " + m + " has no tensor '" + LlamaTensorNames.weight(m) + "'");
        }
      }
      for (String name : file.tensorNames()) {
        String module =
            name.endsWith(".weight") ? name.substring(0, name.length() - ".weight".length()) : null;
        TensorInfo info = file.info(name);
        if (module != null && targets.contains(module)) {
          if (info.rank() != 2) {
            throw new IllegalArgumentException(
                "sparse target " + name + " has shape " + info + "; expected a 2-D weight");
          }
          Compressed c =
              compress(
                  module,
                  info.dtype(),
                  Math.toIntExact(info.dim(0)),
                  Math.toIntExact(info.dim(1)),
                  file.bytes(name));
          for (Map.Entry<String, TensorSource> e : c.tensors(module).entrySet()) {
            writer.write(e.getKey(), e.getValue());
          }
        } else {
          writer.write(
              name,
              TensorSource.lazy(
                  info.dtype(), info.shape(), () -> MemorySegment.ofArray(file.bytes(name))));
        }
      }
      writer.finish();
    }
    ObjectNode written = root.deepCopy();
    ((ObjectNode) written.path("quantization_config").path("sparsity_config"))
        .put("format", FORMAT);
    Files.writeString(
        out.resolve(LlamaConfig.FILE_NAME),
        JSON.writeValueAsString(written) + "\n",
        StandardCharsets.UTF_8);
  }

  private static boolean isZero(DType dtype, byte[] data, int offset) {
    return switch (dtype) {
      // the sign bit is the top bit of the last little-endian byte
      case F32 ->
          data[offset] == 0
              && data[offset + 1] == 0
              && data[offset + 2] == 0
              && (data[offset + 3] & 0x7F) == 0;
      case F16, BF16 -> data[offset] == 0 && (data[offset + 1] & 0x7F) == 0;
      case F8_E4M3 -> (data[offset] & 0x7F) == 0;
      default -> data[offset] == 0;
    };
  }

  private static boolean allBitsZero(byte[] data, int offset, int size) {
    for (int i = 0; i < size; i++) {
      if (data[offset + i] != 0) {
        return false;
      }
    }
    return true;
  }
}
