package io.distillery.model.quant;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.distillery.model.CorruptCheckpointException;
import io.distillery.model.config.LlamaConfig;
import io.distillery.model.config.LlamaTensorNames;
import io.distillery.model.llama.LlamaModel;
import io.distillery.model.safetensors.Checkpoint;
import io.distillery.model.safetensors.DType;
import io.distillery.model.safetensors.SafetensorsWriter;
import io.distillery.model.safetensors.TensorCodec;
import io.distillery.model.safetensors.TensorData;
import io.distillery.model.safetensors.TensorInfo;
import io.distillery.model.safetensors.TensorSource;
import io.distillery.stage.FileTrees;
import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.SequencedMap;

/**
 * Writes and reads quantized Llama checkpoints in the compressed-tensors format exactly as vLLM
 * reads it ({@code quant_method: compressed-tensors}). Followed from the sources (revisions in
 * docs/formats.md): compressed-tensors 0.12.2 .. 0.18.0 ({@code compressors/format.py}, {@code
 * compressors/quantized_compressors/ pack_quantized.py} and {@code naive_quantized.py}, {@code
 * quantization/quant_args.py}, {@code quant_scheme.py}, {@code quant_config.py}, {@code
 * compressors/model_compressors/model_compressor.py} {@code update_config}) and vLLM's {@code
 * model_executor/layers/quantization/compressed_tensors/compressed_tensors.py} with {@code
 * schemes/compressed_tensors_wNa16.py}, {@code compressed_tensors_w8a8_int8.py}, {@code
 * compressed_tensors_w8a16_fp8.py}:
 *
 * <ul>
 *   <li>{@code pack-quantized} (integer weights without input activations: W4A16 group, W8A16
 *       channel, 2/3-bit group): {@code <m>.weight_packed} I32 {@code [out, ceil(in / (32/bits))]}
 *       (see {@link Int32Packing}), {@code <m>.weight_scale} {@code [out, in/group]} ({@code [out,
 *       1]} per channel), {@code <m>.weight_shape} I64 {@code [2]}, and only when asymmetric {@code
 *       <m>.weight_zero_point} I32 packed along dim 0 {@code [ceil(out / (32/bits)), groups]}; x =
 *       (q - z) * s.
 *   <li>{@code int-quantized} (W8A8, static per-tensor input): {@code <m>.weight} I8 {@code [out,
 *       in]}, {@code <m>.weight_scale} {@code [out, 1]}, {@code <m>.input_scale} {@code [1]}.
 *   <li>{@code naive-quantized} (FP8 E4M3 weights alone, per channel): {@code <m>.weight} F8_E4M3,
 *       {@code <m>.weight_scale} {@code [out, 1]}.
 * </ul>
 *
 * Scales are stored in {@link QuantizationScheme#scaleDtype()} (the model's dtype, as
 * llm-compressor leaves them); dense tensors in the model's dtype under their transformers names.
 * {@code lm_head} and the embeddings are never quantized ({@link
 * VllmConstraints#checkQuantizable}). The reader takes the bit width and format from the config and
 * still reads the checkpoints this platform wrote before (asymmetric INT4, W8A16 as int-quantized
 * I8), dequantizing on load so that {@link LlamaModel} (and so the evaluator and the serving node)
 * can run any output.
 */
public final class CompressedTensors {

  public static final String QUANT_METHOD = "compressed-tensors";

  /**
   * The compressed-tensors release whose serialized form is written: per-group {@code format}
   * (since 0.11), no {@code scale_dtype}/{@code zp_dtype} (added in 0.13: older readers reject
   * them, quant_args.py is extra=forbid), {@code sparsity_config} and {@code transform_config}
   * present. vLLM does not check the string.
   */
  public static final String FORMAT_VERSION = "0.12.2";

  private static final ObjectMapper JSON =
      new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT);

  private CompressedTensors() {}

  /**
   * Writes {@code config.json} (with {@code quantization_config}) and {@code model.safetensors}
   * into {@code dir}; dense tensors and scales in the model's {@code torch_dtype}.
   *
   * @param dense every tensor of the model by transformers name (norms, embeddings, and the weights
   *     of modules not in {@code quantized}); weights of quantized modules are ignored
   * @param quantized quantized weights by module name
   * @param inputScales static per-tensor activation scales by module (W8A8), may be empty
   */
  public static void write(
      Path dir,
      LlamaConfig config,
      Map<String, float[]> dense,
      Map<String, QuantizedWeight> quantized,
      Map<String, Float> inputScales,
      QuantizationScheme scheme)
      throws IOException {
    Files.createDirectories(dir);
    QuantizationScheme typed = scheme.withModelDtype(config);
    DType denseType = typed.scaleDtype();
    SequencedMap<String, TensorSource> tensors = new LinkedHashMap<>();
    for (Map.Entry<String, long[]> entry : LlamaTensorNames.shapes(config).entrySet()) {
      String name = entry.getKey();
      String module =
          name.endsWith(".weight") ? name.substring(0, name.length() - ".weight".length()) : null;
      QuantizedWeight q = module == null ? null : quantized.get(module);
      if (q == null) {
        float[] values = dense.get(name);
        if (values == null) {
          throw new IllegalArgumentException("no values for tensor '" + name + "'");
        }
        tensors.put(name, TensorData.ofFloats(denseType, entry.getValue(), values));
        continue;
      }
      tensors.putAll(moduleTensors(module, q, inputScales.get(module), typed));
    }
    Path file = dir.resolve(Checkpoint.SINGLE_FILE);
    SafetensorsWriter.write(file, tensors, Map.of("format", "pt"));
    writeConfig(dir, config, typed);
  }

  /**
   * The tensors one quantized linear module stores, by full tensor name, in the order they are
   * written. This is the one place the format's tensor layout is decided; a streaming writer calls
   * it per module and writes the result as it comes.
   *
   * @param module the module name, e.g. {@code model.layers.3.mlp.down_proj}
   * @param inputScale the static per-tensor input scale (W8A8), or null
   * @throws IllegalArgumentException when the module may not be quantized (lm_head, embeddings), or
   *     {@code q} does not match the scheme (kind, symmetry, code range)
   */
  public static SequencedMap<String, TensorSource> moduleTensors(
      String module, QuantizedWeight q, Float inputScale, QuantizationScheme scheme) {
    VllmConstraints.checkQuantizable(module);
    if (q.kind() != scheme.kind()) {
      throw new IllegalArgumentException(
          module + " is " + q.kind() + " but the scheme is " + scheme.kind());
    }
    if (scheme.symmetric() && q.zeroPoints() != null) {
      throw new IllegalArgumentException(module + " has zero points but the scheme is symmetric");
    }
    if (!scheme.symmetric() && q.zeroPoints() == null) {
      throw new IllegalArgumentException(
          module + " has no zero points but the scheme is asymmetric");
    }
    if (inputScale != null && !scheme.staticInputActivations()) {
      throw new IllegalArgumentException(
          module + " has an input scale but the scheme declares no static input " + "activations");
    }
    SequencedMap<String, TensorSource> tensors = new LinkedHashMap<>();
    if (scheme.packed()) {
      putPacked(tensors, module, q, scheme);
    } else {
      putUnpacked(tensors, module, q, scheme);
    }
    if (inputScale != null) {
      tensors.put(
          module + ".input_scale",
          TensorData.ofFloats(scheme.scaleDtype(), new long[] {1}, new float[] {inputScale}));
    }
    return tensors;
  }

  /**
   * {@link #moduleTensors} of {@link GroupQuantizer#int8PerChannel(TensorData)} of a weight as the
   * checkpoint stores it (w8-rtn): the same tensors, byte for byte, but in the weight-only {@code
   * pack-quantized} layout the codes go one byte each straight into the packed words, never held as
   * ints. Other layouts take the general path.
   */
  public static SequencedMap<String, TensorSource> int8ChannelTensors(
      String module, TensorData weight, QuantizationScheme scheme) {
    if (scheme.kind() != QuantizedWeight.Kind.INT8_CHANNEL || !scheme.packed()) {
      return moduleTensors(module, GroupQuantizer.int8PerChannel(weight), null, scheme);
    }
    VllmConstraints.checkQuantizable(module);
    GroupQuantizer.Int8Channel q = GroupQuantizer.int8PerChannelBytes(weight);
    long rows = q.rows();
    SequencedMap<String, TensorSource> tensors = new LinkedHashMap<>();
    tensors.put(
        module + ".weight_packed",
        new TensorData(
            DType.I32,
            new long[] {rows, (q.cols() + 3) / 4},
            MemorySegment.ofArray(Int32Packing.packRowsInt8(q.codes(), q.rows(), q.cols()))));
    tensors.put(
        module + ".weight_scale",
        TensorData.ofFloats(scheme.scaleDtype(), new long[] {rows, 1}, q.scales()));
    tensors.put(
        module + ".weight_shape",
        TensorData.ofBytes(DType.I64, new long[] {2}, TensorCodec.longsToBytes(rows, q.cols())));
    return tensors;
  }

  /**
   * Writes {@code config.json}: {@code config} (its {@code torch_dtype} as the dense tensors are
   * stored) with the {@code quantization_config} of {@code scheme}.
   */
  public static void writeConfig(Path dir, LlamaConfig config, QuantizationScheme scheme)
      throws IOException {
    writeQuantizationConfig(dir, config, quantizationConfig(scheme));
  }

  /**
   * Writes {@code config.json} for a dense checkpoint whose linear weights are 2:4 sparse: a {@code
   * quantization_config} holding only {@code sparsity_config}, as compressed-tensors' {@code
   * ModelCompressor.update_config} writes it for a sparse model without quantization (format {@code
   * dense}: the weights stay uncompressed, zeros included).
   */
  public static void writeSparseConfig(
      Path dir, LlamaConfig config, QuantizationScheme.Sparsity sparsity) throws IOException {
    ObjectNode q = JSON.createObjectNode();
    q.put("quant_method", QUANT_METHOD);
    q.set("sparsity_config", sparsityConfig(sparsity));
    q.putObject("transform_config");
    q.put("version", FORMAT_VERSION);
    writeQuantizationConfig(dir, config, q);
  }

  private static void writeQuantizationConfig(Path dir, LlamaConfig config, ObjectNode q)
      throws IOException {
    Files.createDirectories(dir);
    ObjectNode root = (ObjectNode) JSON.readTree(config.toJson());
    root.set("quantization_config", q);
    Files.writeString(
        dir.resolve(LlamaConfig.FILE_NAME),
        JSON.writeValueAsString(root) + "\n",
        StandardCharsets.UTF_8);
  }

  private static void putPacked(
      Map<String, TensorSource> tensors, String m, QuantizedWeight q, QuantizationScheme scheme) {
    int bits = scheme.bits();
    checkRange(m, q.codes(), bits, "codes");
    long rows = q.rows();
    int[] packed = Int32Packing.packRows(q.codes(), q.rows(), q.cols(), bits);
    tensors.put(
        m + ".weight_packed", TensorData.ofInts(new long[] {rows, packed.length / rows}, packed));
    tensors.put(
        m + ".weight_scale",
        TensorData.ofFloats(scheme.scaleDtype(), new long[] {rows, q.groups()}, q.scales()));
    if (q.zeroPoints() != null) {
      checkRange(m, q.zeroPoints(), bits, "zero points");
      int[] zp = Int32Packing.packColumns(q.zeroPoints(), q.rows(), q.groups(), bits);
      tensors.put(
          m + ".weight_zero_point",
          TensorData.ofBytes(
              DType.I32,
              new long[] {zp.length / q.groups(), q.groups()},
              TensorCodec.intsToBytes(zp)));
    }
    tensors.put(
        m + ".weight_shape",
        TensorData.ofBytes(DType.I64, new long[] {2}, TensorCodec.longsToBytes(rows, q.cols())));
  }

  private static void putUnpacked(
      Map<String, TensorSource> tensors, String m, QuantizedWeight q, QuantizationScheme scheme) {
    boolean int8 = q.kind() == QuantizedWeight.Kind.INT8_CHANNEL;
    if (int8) {
      checkRange(m, q.codes(), 8, "codes");
    }
    byte[] codes = new byte[q.codes().length];
    for (int i = 0; i < codes.length; i++) {
      codes[i] = (byte) q.codes()[i];
    }
    tensors.put(
        m + ".weight",
        TensorData.ofBytes(
            int8 ? DType.I8 : DType.F8_E4M3, new long[] {q.rows(), q.cols()}, codes));
    tensors.put(
        m + ".weight_scale",
        TensorData.ofFloats(scheme.scaleDtype(), new long[] {q.rows(), 1}, q.scales()));
  }

  private static void checkRange(String m, int[] values, int bits, String what) {
    int lo = -(1 << (bits - 1));
    int hi = (1 << (bits - 1)) - 1;
    for (int v : values) {
      if (v < lo || v > hi) {
        throw new IllegalArgumentException(
            m
                + ": "
                + what
                + " must lie in ["
                + lo
                + ", "
                + hi
                + "] for "
                + bits
                + "-bit packing, got "
                + v);
      }
    }
  }

  /**
   * compressed-tensors' {@code QuantizationArgs} as the library serializes it (keys sorted,
   * 0.12.2's key set).
   */
  private static ObjectNode args(
      int bits, String type, String strategy, Integer groupSize, boolean symmetric) {
    ObjectNode a = JSON.createObjectNode();
    a.putNull("actorder");
    a.putNull("block_structure");
    a.put("dynamic", false);
    if (groupSize == null) {
      a.putNull("group_size");
    } else {
      a.put("group_size", groupSize);
    }
    a.put("num_bits", bits);
    a.put("observer", "minmax");
    a.putObject("observer_kwargs");
    a.put("strategy", strategy);
    a.put("symmetric", symmetric);
    a.put("type", type);
    return a;
  }

  static ObjectNode quantizationConfig(QuantizationScheme scheme) {
    boolean group = scheme.kind() == QuantizedWeight.Kind.INT4_GROUP;
    ObjectNode weights =
        args(
            scheme.bits(),
            scheme.kind() == QuantizedWeight.Kind.FP8_CHANNEL ? "float" : "int",
            scheme.strategy(),
            group ? scheme.groupSize() : null,
            scheme.symmetric());

    ObjectNode groupNode = JSON.createObjectNode();
    groupNode.put("format", scheme.format());
    if (scheme.staticInputActivations()) {
      groupNode.set("input_activations", args(8, "int", "tensor", null, true));
    } else {
      groupNode.putNull("input_activations");
    }
    groupNode.putNull("output_activations");
    groupNode.putArray("targets").add("Linear");
    groupNode.set("weights", weights);

    ObjectNode config = JSON.createObjectNode();
    config.putObject("config_groups").set("group_0", groupNode);
    config.put("format", scheme.format());
    config.putNull("global_compression_ratio");
    ArrayNode ignore = config.putArray("ignore");
    List<String> ignored = new ArrayList<>(scheme.ignore());
    if (!ignored.contains(LlamaTensorNames.LM_HEAD_MODULE)) {
      ignored.add(LlamaTensorNames.LM_HEAD_MODULE);
    }
    ignored.forEach(ignore::add);
    config.putNull("kv_cache_scheme");
    config.put("quant_method", QUANT_METHOD);
    config.put("quantization_status", "compressed");
    if (scheme.sparsity() == null) {
      config.putObject("sparsity_config");
    } else {
      config.set("sparsity_config", sparsityConfig(scheme.sparsity()));
    }
    config.putObject("transform_config");
    config.put("version", FORMAT_VERSION);
    return config;
  }

  /**
   * compressed-tensors' dense {@code SparsityCompressionConfig} (config/base.py, config/dense.py),
   * keys sorted.
   */
  private static ObjectNode sparsityConfig(QuantizationScheme.Sparsity s) {
    ObjectNode node = JSON.createObjectNode();
    node.put("format", "dense");
    node.put("global_sparsity", s.globalSparsity());
    ArrayNode ignore = node.putArray("ignore");
    if (!s.targets().contains(LlamaTensorNames.LM_HEAD_MODULE)) {
      ignore.add(LlamaTensorNames.LM_HEAD_MODULE);
    }
    node.put("registry_requires_subclass", false);
    node.put("sparsity_structure", s.structure());
    ArrayNode targets = node.putArray("targets");
    s.targets().forEach(targets::add);
    return node;
  }

  /** The quantized weights of a compressed-tensors checkpoint, by module, exactly as stored. */
  public static Map<String, QuantizedWeight> readQuantized(Path dir) throws IOException {
    LlamaConfig config = LlamaConfig.read(dir.resolve(LlamaConfig.FILE_NAME));
    try (Checkpoint checkpoint = Checkpoint.open(dir)) {
      return readQuantized(dir, config, checkpoint);
    }
  }

  private static Map<String, QuantizedWeight> readQuantized(
      Path dir, LlamaConfig config, Checkpoint file) throws IOException {
    Declared declared = Declared.of(dir);
    Map<String, QuantizedWeight> out = new LinkedHashMap<>();
    for (String module : LlamaTensorNames.linearModules(config)) {
      try {
        QuantizedWeight q = readModule(file, module, declared);
        if (q != null) {
          out.put(module, q);
        }
      } catch (RuntimeException e) {
        throw new CorruptCheckpointException(
            dir, "inconsistent quantized tensors of " + module + ": " + e.getMessage(), e);
      }
    }
    return out;
  }

  /**
   * What {@code quantization_config} declares about the weights (first config group): their bit
   * width and strategy. Checkpoints written before the width was taken from the config are 4-bit
   * when packed.
   */
  private record Declared(int bits, String strategy) {

    static Declared of(Path dir) throws IOException {
      JsonNode q =
          JSON.readTree(dir.resolve(LlamaConfig.FILE_NAME).toFile()).path("quantization_config");
      JsonNode groups = q.path("config_groups");
      if (groups.size() > 1) {
        throw new CorruptCheckpointException(
            dir,
            "quantization_config has "
                + groups.size()
                + " config_groups; this reader takes one scheme for all layers");
      }
      JsonNode weights =
          groups.elements().hasNext() ? groups.elements().next().path("weights") : null;
      if (weights == null || weights.isMissingNode() || weights.isNull()) {
        return new Declared(4, "group");
      }
      int bits = weights.path("num_bits").asInt(4);
      if (!QuantizationScheme.PACKED_BITS.contains(bits)) {
        throw new CorruptCheckpointException(
            dir,
            "weights of "
                + bits
                + " bits are not supported; packed widths "
                + "are "
                + QuantizationScheme.PACKED_BITS);
      }
      return new Declared(bits, weights.path("strategy").asText("group"));
    }
  }

  /** The static activation scales ({@code <module>.input_scale}) of a W8A8 checkpoint. */
  public static Map<String, Float> readInputScales(Path dir) throws IOException {
    Map<String, Float> out = new LinkedHashMap<>();
    try (Checkpoint checkpoint = Checkpoint.open(dir)) {
      for (String name : checkpoint.tensorNames()) {
        if (name.endsWith(".input_scale")) {
          out.put(
              name.substring(0, name.length() - ".input_scale".length()),
              checkpoint.floats(name)[0]);
        }
      }
    }
    return out;
  }

  /**
   * One module's quantized weight as stored, read from an open checkpoint (bit width and strategy
   * from {@code dir}'s config.json), or null when the module is dense: what a layer-streaming
   * reader dequantizes one layer at a time instead of the whole model.
   *
   * @throws CorruptCheckpointException if the module's quantized tensors disagree with each other
   *     or the config
   */
  public static QuantizedWeight readModule(Checkpoint file, Path dir, String module)
      throws IOException {
    Declared declared = Declared.of(dir);
    try {
      return readModule(file, module, declared);
    } catch (RuntimeException e) {
      throw new CorruptCheckpointException(
          dir, "inconsistent quantized tensors of " + module + ": " + e.getMessage(), e);
    }
  }

  private static QuantizedWeight readModule(Checkpoint file, String m, Declared declared)
      throws CorruptCheckpointException {
    if (!isQuantizedModule(file, m)) {
      return null;
    }
    if (file.contains(m + ".weight_packed")) {
      int bits = declared.bits();
      long[] shape = TensorCodec.bytesToLongs(file.bytes(m + ".weight_shape"));
      int rows = Math.toIntExact(shape[0]);
      int cols = Math.toIntExact(shape[1]);
      int[] codes =
          Int32Packing.unpackRows(
              TensorCodec.bytesToInts(file.bytes(m + ".weight_packed")), rows, cols, bits);
      TensorInfo scale = file.info(m + ".weight_scale");
      int groups = scale.shape().length < 2 ? 1 : Math.toIntExact(scale.dim(1));
      int[] zeros = null;
      if (file.contains(m + ".weight_zero_point")) {
        zeros =
            Int32Packing.unpackColumns(
                TensorCodec.bytesToInts(file.bytes(m + ".weight_zero_point")), rows, groups, bits);
      }
      boolean channel =
          bits == 8 && groups == 1 && zeros == null && declared.strategy().equals("channel");
      return new QuantizedWeight(
          channel ? QuantizedWeight.Kind.INT8_CHANNEL : QuantizedWeight.Kind.INT4_GROUP,
          rows,
          cols,
          cols / groups,
          codes,
          file.floats(m + ".weight_scale"),
          zeros,
          bits);
    }
    // 8-bit codes stored whole, or 2:4-compressed after quantization (sparse-24-bitmask)
    TensorData sparse =
        Sparse24Bitmask.isCompressed(file, m) ? Sparse24Bitmask.read(file, m) : null;
    TensorInfo weight =
        sparse == null
            ? file.info(m + ".weight")
            : new TensorInfo(
                m + ".weight", sparse.dtype(), sparse.shape(), 0, sparse.data().byteSize());
    QuantizedWeight.Kind kind =
        switch (weight.dtype()) {
          case I8 -> QuantizedWeight.Kind.INT8_CHANNEL;
          case F8_E4M3 -> QuantizedWeight.Kind.FP8_CHANNEL;
          default ->
              throw new IllegalArgumentException(
                  "tensor '"
                      + m
                      + ".weight' is "
                      + weight.dtype()
                      + " next to a weight_scale; expected I8 or F8_E4M3");
        };
    int rows = Math.toIntExact(weight.dim(0));
    int cols = Math.toIntExact(weight.dim(1));
    byte[] bytes =
        sparse == null ? file.bytes(m + ".weight") : sparse.data().toArray(ValueLayout.JAVA_BYTE);
    int[] codes = new int[bytes.length];
    for (int i = 0; i < bytes.length; i++) {
      codes[i] = kind == QuantizedWeight.Kind.INT8_CHANNEL ? bytes[i] : bytes[i] & 0xFF;
    }
    return new QuantizedWeight(
        kind, rows, cols, cols, codes, file.floats(m + ".weight_scale"), null);
  }

  /**
   * Writes a dense F32 Hugging Face checkpoint of a compressed-tensors one (weights dequantized, no
   * quantization_config) into {@code out}. A dense checkpoint cannot carry W8A8's activation
   * quantization: to run or evaluate a W8A8 output as an INT8 engine would, use {@link
   * #loadDequantized(Path)}.
   */
  public static void decompress(Path dir, Path out) throws IOException {
    LlamaConfig config = LlamaConfig.read(dir.resolve(LlamaConfig.FILE_NAME));
    Files.createDirectories(out);
    Declared declared = Declared.of(dir);
    SequencedMap<String, TensorSource> tensors = new LinkedHashMap<>();
    try (Checkpoint file = Checkpoint.open(dir)) {
      // every name and dtype from the headers first; the values are then made one tensor at a
      // time as the writer reaches them, so a 1B model never has all its weights in F32 on the heap
      for (Map.Entry<String, long[]> entry : LlamaTensorNames.shapes(config).entrySet()) {
        String name = entry.getKey();
        String module =
            name.endsWith(".weight") ? name.substring(0, name.length() - ".weight".length()) : null;
        boolean quantized = module != null && isQuantizedModule(file, module);
        if (!quantized && module != null && Sparse24Bitmask.isCompressed(file, module)) {
          // a dense weight stored sparse-24-bitmask: decompressed when the writer reaches it
          tensors.put(name, sparseDense(dir, file, module, entry.getValue()));
          continue;
        }
        if (!quantized && !file.contains(name)) {
          throw new CorruptCheckpointException(dir, "tensor '" + name + "' is missing");
        }
        if (!quantized && !file.info(name).dtype().isFloatingPoint()) {
          throw new CorruptCheckpointException(
              dir,
              "tensor '"
                  + name
                  + "' is "
                  + file.info(name).dtype()
                  + " without a weight_scale; expected a float tensor");
        }
        tensors.put(
            name,
            TensorSource.lazy(
                DType.F32,
                entry.getValue(),
                () -> {
                  float[] values;
                  if (quantized) {
                    try {
                      values = readModule(file, module, declared).dequantize();
                    } catch (RuntimeException e) {
                      throw new CorruptCheckpointException(
                          dir,
                          "inconsistent quantized tensors of " + module + ": " + e.getMessage(),
                          e);
                    }
                  } else {
                    values = file.floats(name);
                  }
                  return TensorCodec.encodeFloats(values, DType.F32);
                }));
      }
      SafetensorsWriter.write(out.resolve(Checkpoint.SINGLE_FILE), tensors, Map.of("format", "pt"));
    }
    config.withTorchDtype("float32").write(out);
  }

  /** The F32 values of a dense weight stored sparse-24-bitmask, made when the writer asks. */
  private static TensorSource sparseDense(Path dir, Checkpoint file, String module, long[] shape) {
    return TensorSource.lazy(
        DType.F32,
        shape,
        () -> {
          TensorData dense;
          try {
            dense = Sparse24Bitmask.read(file, module);
          } catch (RuntimeException e) {
            throw new CorruptCheckpointException(
                dir,
                "inconsistent sparse-24-bitmask tensors of " + module + ": " + e.getMessage(),
                e);
          }
          if (!dense.dtype().isFloatingPoint() || !Arrays.equals(dense.shape(), shape)) {
            throw new CorruptCheckpointException(
                dir,
                module
                    + ".compressed is "
                    + dense.dtype()
                    + Arrays.toString(dense.shape())
                    + " without a weight_scale; expected a float weight of shape "
                    + Arrays.toString(shape));
          }
          return TensorCodec.encodeFloats(
              TensorCodec.decodeFloats(dense.data(), dense.dtype()), DType.F32);
        });
  }

  /** Whether a linear module is stored quantized ({@link #readModule} reads it) or dense. */
  private static boolean isQuantizedModule(Checkpoint file, String module) {
    return file.contains(module + ".weight_packed") || file.contains(module + ".weight_scale");
  }

  /**
   * Loads a compressed-tensors checkpoint into a float {@link LlamaModel}, dequantizing every
   * quantized weight. When the checkpoint declares static INT8 input activations (W8A8), the model
   * also quantizes and dequantizes each quantized layer's input with its {@code input_scale} (see
   * {@link StaticActivationQuantization}), so that what is measured is what an INT8 engine
   * computes.
   */
  public static LlamaModel loadDequantized(Path dir) throws IOException {
    Path tmp = Files.createTempDirectory("dequantized-");
    try {
      decompress(dir, tmp);
      LlamaModel model = LlamaModel.load(tmp);
      StaticActivationQuantization activations = activationQuantization(dir);
      if (activations != null) {
        model.transformLinearInputs(activations);
      }
      return model;
    } finally {
      FileTrees.delete(tmp);
    }
  }

  /**
   * Loads any checkpoint the stages write as a float {@link LlamaModel}: compressed-tensors ones
   * dequantized, plain HF ones as they are.
   */
  public static LlamaModel loadAny(Path dir) throws IOException {
    return isCompressed(dir) ? loadDequantized(dir) : LlamaModel.load(dir);
  }

  /**
   * The input quantization a compressed-tensors checkpoint declares, or null when its activations
   * stay in float. Only static symmetric INT8 per-tensor input activations (what this platform
   * writes for W8A8) are simulated.
   *
   * @throws CorruptCheckpointException if the config asks for another activation scheme, or a
   *     quantized layer has no {@code input_scale}
   */
  public static StaticActivationQuantization activationQuantization(Path dir) throws IOException {
    JsonNode root = JSON.readTree(dir.resolve(LlamaConfig.FILE_NAME).toFile());
    JsonNode q = root.path("quantization_config");
    if (!QUANT_METHOD.equals(q.path("quant_method").asText())) {
      return null;
    }
    boolean staticInt8 = false;
    for (JsonNode group : q.path("config_groups")) {
      JsonNode input = group.path("input_activations");
      if (input.isMissingNode() || input.isNull()) {
        continue;
      }
      boolean supported =
          !input.path("dynamic").asBoolean(false)
              && input.path("num_bits").asInt() == 8
              && "int".equals(input.path("type").asText())
              && "tensor".equals(input.path("strategy").asText())
              && input.path("symmetric").asBoolean(true);
      if (!supported) {
        throw new CorruptCheckpointException(
            dir,
            "input_activations "
                + input
                + " are not supported; only static symmetric int8 per-tensor activations are simulated");
      }
      staticInt8 = true;
    }
    if (!staticInt8) {
      return null;
    }
    Map<String, Float> scales = readInputScales(dir);
    for (String module : readQuantized(dir).keySet()) {
      if (!scales.containsKey(module)) {
        throw new CorruptCheckpointException(
            dir, "declares static input activations but " + module + " has no input_scale");
      }
    }
    try {
      return new StaticActivationQuantization(scales);
    } catch (IllegalArgumentException e) {
      throw new CorruptCheckpointException(dir, e.getMessage(), e);
    }
  }

  /** Whether {@code config.json} of {@code dir} declares compressed-tensors quantization. */
  public static boolean isCompressed(Path dir) throws IOException {
    JsonNode root = JSON.readTree(dir.resolve(LlamaConfig.FILE_NAME).toFile());
    JsonNode q = root.get("quantization_config");
    return q != null && QUANT_METHOD.equals(q.path("quant_method").asText());
  }
}
