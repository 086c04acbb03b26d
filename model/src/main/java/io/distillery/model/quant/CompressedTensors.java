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
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.SequencedMap;
import java.util.stream.Stream;

/**
 * Writes and reads quantized Llama checkpoints in the compressed-tensors format that vLLM loads
 * ({@code quant_method: compressed-tensors}). What we follow, read from the compressed-tensors sources
 * (compressors/quantized_compressors/{pack_quantized,naive_quantized}.py, quantization/quant_args.py,
 * quant_scheme.py) and llm-compressor's saved configs:
 * <ul>
 *   <li>{@code pack-quantized} (W4A16, group): {@code <m>.weight_packed} I32 {@code [out, in/8]} (see
 *       {@link Int32Packing}), {@code <m>.weight_scale} {@code [out, in/group]}, {@code <m>.weight_zero_point} I32
 *       packed along dim 0 {@code [ceil(out/8), in/group]} (asymmetric), {@code <m>.weight_shape} I64 {@code [2]};
 *       codes and zero points signed in [-8, 7], x = (q - z) * s.</li>
 *   <li>{@code int-quantized} (W8A16 / W8A8, channel, symmetric): {@code <m>.weight} I8 {@code [out, in]},
 *       {@code <m>.weight_scale} {@code [out, 1]}; static activations add {@code <m>.input_scale} {@code [1]}.</li>
 *   <li>{@code float-quantized} (FP8 weights, channel): {@code <m>.weight} F8_E4M3, {@code <m>.weight_scale}
 *       {@code [out, 1]}.</li>
 * </ul>
 * Scales are written F32 (the config's torch_dtype is float32). Modules in {@code ignore} and every non-linear
 * tensor stay dense F32 under their transformers names. The reader dequantizes on load so that {@link LlamaModel}
 * (and so the evaluator) can run any output.
 */
public final class CompressedTensors {

  public static final String QUANT_METHOD = "compressed-tensors";

  private static final ObjectMapper JSON = new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT);

  private CompressedTensors() {}

  /**
   * Writes {@code config.json} (with {@code quantization_config}) and {@code model.safetensors} into {@code dir}.
   *
   * @param dense every tensor of the model by transformers name (norms, embeddings, and the weights of modules not
   *     in {@code quantized}); weights of quantized modules are ignored
   * @param quantized quantized weights by module name
   * @param inputScales static per-tensor activation scales by module (W8A8), may be empty
   */
  public static void write(Path dir, LlamaConfig config, Map<String, float[]> dense,
      Map<String, QuantizedWeight> quantized, Map<String, Float> inputScales, QuantizationScheme scheme)
      throws IOException {
    Files.createDirectories(dir);
    SequencedMap<String, TensorSource> tensors = new LinkedHashMap<>();
    for (Map.Entry<String, long[]> entry : LlamaTensorNames.shapes(config).entrySet()) {
      String name = entry.getKey();
      String module = name.endsWith(".weight") ? name.substring(0, name.length() - ".weight".length()) : null;
      QuantizedWeight q = module == null ? null : quantized.get(module);
      if (q == null) {
        float[] values = dense.get(name);
        if (values == null) {
          throw new IllegalArgumentException("no values for tensor '" + name + "'");
        }
        tensors.put(name, TensorData.ofFloats(entry.getValue(), values));
        continue;
      }
      tensors.putAll(moduleTensors(module, q, inputScales.get(module), scheme));
    }
    Path file = dir.resolve(Checkpoint.SINGLE_FILE);
    SafetensorsWriter.write(file, tensors, Map.of("format", "pt"));
    writeConfig(dir, config.withTorchDtype("float32"), scheme);
  }

  /**
   * The tensors one quantized linear module stores, by full tensor name, in the order they are written. This is the
   * one place the format's tensor layout is decided; a streaming writer calls it per module and writes the result
   * as it comes.
   *
   * @param module the module name, e.g. {@code model.layers.3.mlp.down_proj}
   * @param inputScale the static per-tensor input scale (W8A8), or null
   */
  public static SequencedMap<String, TensorSource> moduleTensors(String module, QuantizedWeight q, Float inputScale,
      QuantizationScheme scheme) {
    if (q.kind() != scheme.kind()) {
      throw new IllegalArgumentException(module + " is " + q.kind() + " but the scheme is " + scheme.kind());
    }
    SequencedMap<String, TensorSource> tensors = new LinkedHashMap<>();
    putQuantized(tensors, module, q);
    if (inputScale != null) {
      tensors.put(module + ".input_scale", TensorData.ofFloats(new long[] {1}, new float[] {inputScale}));
    }
    return tensors;
  }

  /**
   * Writes {@code config.json}: {@code config} (its {@code torch_dtype} as the dense tensors are stored) with the
   * {@code quantization_config} of {@code scheme}.
   */
  public static void writeConfig(Path dir, LlamaConfig config, QuantizationScheme scheme) throws IOException {
    Files.createDirectories(dir);
    ObjectNode root = (ObjectNode) JSON.readTree(config.toJson());
    root.set("quantization_config", quantizationConfig(scheme));
    Files.writeString(dir.resolve(LlamaConfig.FILE_NAME), JSON.writeValueAsString(root) + "\n",
        StandardCharsets.UTF_8);
  }

  private static void putQuantized(Map<String, TensorSource> tensors, String m, QuantizedWeight q) {
    long rows = q.rows();
    long cols = q.cols();
    switch (q.kind()) {
      case INT4_GROUP -> {
        int[] packed = Int32Packing.packRows(q.codes(), q.rows(), q.cols(), 4);
        tensors.put(m + ".weight_packed", TensorData.ofBytes(DType.I32, new long[] {rows, packed.length / rows},
            TensorCodec.intsToBytes(packed)));
        tensors.put(m + ".weight_scale", TensorData.ofFloats(new long[] {rows, q.groups()}, q.scales()));
        if (q.zeroPoints() != null) {
          int[] zp = Int32Packing.packColumns(q.zeroPoints(), q.rows(), q.groups(), 4);
          tensors.put(m + ".weight_zero_point", TensorData.ofBytes(DType.I32,
              new long[] {zp.length / q.groups(), q.groups()}, TensorCodec.intsToBytes(zp)));
        }
        tensors.put(m + ".weight_shape", TensorData.ofBytes(DType.I64, new long[] {2}, TensorCodec.longsToBytes(rows, cols)));
      }
      case INT8_CHANNEL, FP8_CHANNEL -> {
        byte[] codes = new byte[q.codes().length];
        for (int i = 0; i < codes.length; i++) {
          codes[i] = (byte) q.codes()[i];
        }
        DType type = q.kind() == QuantizedWeight.Kind.INT8_CHANNEL ? DType.I8 : DType.F8_E4M3;
        tensors.put(m + ".weight", TensorData.ofBytes(type, new long[] {rows, cols}, codes));
        tensors.put(m + ".weight_scale", TensorData.ofFloats(new long[] {rows, 1}, q.scales()));
      }
    }
  }

  static ObjectNode quantizationConfig(QuantizationScheme scheme) {
    ObjectNode weights = JSON.createObjectNode();
    boolean int4 = scheme.kind() == QuantizedWeight.Kind.INT4_GROUP;
    weights.putNull("actorder");
    weights.putNull("block_structure");
    weights.put("dynamic", false);
    if (int4) {
      weights.put("group_size", scheme.groupSize());
    } else {
      weights.putNull("group_size");
    }
    weights.put("num_bits", scheme.kind().bits());
    weights.put("observer", "minmax");
    weights.putObject("observer_kwargs");
    weights.put("strategy", int4 ? "group" : "channel");
    weights.put("symmetric", !int4);
    weights.put("type", scheme.kind() == QuantizedWeight.Kind.FP8_CHANNEL ? "float" : "int");

    ObjectNode group = JSON.createObjectNode();
    if (scheme.staticInputActivations()) {
      ObjectNode input = group.putObject("input_activations");
      input.putNull("actorder");
      input.putNull("block_structure");
      input.put("dynamic", false);
      input.putNull("group_size");
      input.put("num_bits", 8);
      input.put("observer", "minmax");
      input.putObject("observer_kwargs");
      input.put("strategy", "tensor");
      input.put("symmetric", true);
      input.put("type", "int");
    } else {
      group.putNull("input_activations");
    }
    group.putNull("output_activations");
    group.putArray("targets").add("Linear");
    group.set("weights", weights);

    ObjectNode config = JSON.createObjectNode();
    config.putObject("config_groups").set("group_0", group);
    config.put("format", scheme.format());
    config.putNull("global_compression_ratio");
    ArrayNode ignore = config.putArray("ignore");
    scheme.ignore().forEach(ignore::add);
    config.putNull("kv_cache_scheme");
    config.put("quant_method", QUANT_METHOD);
    config.put("quantization_status", "compressed");
    return config;
  }

  /** The quantized weights of a compressed-tensors checkpoint, by module, exactly as stored. */
  public static Map<String, QuantizedWeight> readQuantized(Path dir) throws IOException {
    LlamaConfig config = LlamaConfig.read(dir.resolve(LlamaConfig.FILE_NAME));
    try (Checkpoint checkpoint = Checkpoint.open(dir)) {
      return readQuantized(dir, config, checkpoint);
    }
  }

  private static Map<String, QuantizedWeight> readQuantized(Path dir, LlamaConfig config, Checkpoint file)
      throws IOException {
    Map<String, QuantizedWeight> out = new LinkedHashMap<>();
    for (String module : LlamaTensorNames.linearModules(config)) {
      try {
        QuantizedWeight q = readModule(file, module);
        if (q != null) {
          out.put(module, q);
        }
      } catch (RuntimeException e) {
        throw new CorruptCheckpointException(dir, "inconsistent quantized tensors of " + module + ": "
            + e.getMessage(), e);
      }
    }
    return out;
  }

  /** The static activation scales ({@code <module>.input_scale}) of a W8A8 checkpoint. */
  public static Map<String, Float> readInputScales(Path dir) throws IOException {
    Map<String, Float> out = new LinkedHashMap<>();
    try (Checkpoint checkpoint = Checkpoint.open(dir)) {
      for (String name : checkpoint.tensorNames()) {
        if (name.endsWith(".input_scale")) {
          out.put(name.substring(0, name.length() - ".input_scale".length()), checkpoint.floats(name)[0]);
        }
      }
    }
    return out;
  }

  /**
   * One module's quantized weight as stored, read from an open checkpoint, or null when the module is dense: what a
   * layer-streaming reader dequantizes one layer at a time instead of the whole model.
   *
   * @throws CorruptCheckpointException if the module's quantized tensors disagree with each other
   */
  public static QuantizedWeight readModule(Checkpoint file, Path dir, String module) throws CorruptCheckpointException {
    try {
      return readModule(file, module);
    } catch (RuntimeException e) {
      throw new CorruptCheckpointException(dir, "inconsistent quantized tensors of " + module + ": " + e.getMessage(),
          e);
    }
  }

  private static QuantizedWeight readModule(Checkpoint file, String m) throws CorruptCheckpointException {
    if (file.contains(m + ".weight_packed")) {
      long[] shape = TensorCodec.bytesToLongs(file.bytes(m + ".weight_shape"));
      int rows = Math.toIntExact(shape[0]);
      int cols = Math.toIntExact(shape[1]);
      int[] codes = Int32Packing.unpackRows(TensorCodec.bytesToInts(file.bytes(m + ".weight_packed")), rows, cols, 4);
      int groups = Math.toIntExact(file.info(m + ".weight_scale").dim(1));
      int[] zeros = null;
      if (file.contains(m + ".weight_zero_point")) {
        zeros = Int32Packing.unpackColumns(TensorCodec.bytesToInts(file.bytes(m + ".weight_zero_point")), rows, groups,
            4);
      }
      return new QuantizedWeight(QuantizedWeight.Kind.INT4_GROUP, rows, cols, cols / groups, codes,
          file.floats(m + ".weight_scale"), zeros);
    }
    if (!file.contains(m + ".weight_scale")) {
      return null;
    }
    TensorInfo weight = file.info(m + ".weight");
    QuantizedWeight.Kind kind = switch (weight.dtype()) {
      case I8 -> QuantizedWeight.Kind.INT8_CHANNEL;
      case F8_E4M3 -> QuantizedWeight.Kind.FP8_CHANNEL;
      default -> throw new IllegalArgumentException("tensor '" + m + ".weight' is " + weight.dtype()
          + " next to a weight_scale; expected I8 or F8_E4M3");
    };
    int rows = Math.toIntExact(weight.dim(0));
    int cols = Math.toIntExact(weight.dim(1));
    byte[] bytes = file.bytes(m + ".weight");
    int[] codes = new int[bytes.length];
    for (int i = 0; i < bytes.length; i++) {
      codes[i] = kind == QuantizedWeight.Kind.INT8_CHANNEL ? bytes[i] : bytes[i] & 0xFF;
    }
    return new QuantizedWeight(kind, rows, cols, cols, codes, file.floats(m + ".weight_scale"), null);
  }

  /**
   * Writes a dense F32 Hugging Face checkpoint of a compressed-tensors one (weights dequantized, no
   * quantization_config) into {@code out}. A dense checkpoint cannot carry W8A8's activation quantization: to run or
   * evaluate a W8A8 output as an INT8 engine would, use {@link #loadDequantized(Path)}.
   */
  public static void decompress(Path dir, Path out) throws IOException {
    LlamaConfig config = LlamaConfig.read(dir.resolve(LlamaConfig.FILE_NAME));
    Files.createDirectories(out);
    SequencedMap<String, TensorSource> tensors = new LinkedHashMap<>();
    try (Checkpoint file = Checkpoint.open(dir)) {
      Map<String, QuantizedWeight> quantized = readQuantized(dir, config, file);
      for (Map.Entry<String, long[]> entry : LlamaTensorNames.shapes(config).entrySet()) {
        String name = entry.getKey();
        QuantizedWeight q = name.endsWith(".weight")
            ? quantized.get(name.substring(0, name.length() - ".weight".length())) : null;
        if (q == null && !file.contains(name)) {
          throw new CorruptCheckpointException(dir, "tensor '" + name + "' is missing");
        }
        if (q == null && !file.info(name).dtype().isFloatingPoint()) {
          throw new CorruptCheckpointException(dir, "tensor '" + name + "' is " + file.info(name).dtype()
              + " without a weight_scale; expected a float tensor");
        }
        float[] values = q != null ? q.dequantize() : file.floats(name);
        tensors.put(name, TensorData.ofFloats(entry.getValue(), values));
      }
      SafetensorsWriter.write(out.resolve(Checkpoint.SINGLE_FILE), tensors, Map.of("format", "pt"));
    }
    config.withTorchDtype("float32").write(out);
  }

  /**
   * Loads a compressed-tensors checkpoint into a float {@link LlamaModel}, dequantizing every quantized weight. When the
   * checkpoint declares static INT8 input activations (W8A8), the model also quantizes and dequantizes each quantized
   * layer's input with its {@code input_scale} (see {@link StaticActivationQuantization}), so that what is measured
   * is what an INT8 engine computes.
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
      try (Stream<Path> files = Files.walk(tmp)) {
        for (Path p : files.sorted(Comparator.reverseOrder()).toList()) {
          Files.deleteIfExists(p);
        }
      }
    }
  }

  /**
   * Loads any checkpoint the stages write as a float {@link LlamaModel}: compressed-tensors ones dequantized, plain HF
   * ones as they are.
   */
  public static LlamaModel loadAny(Path dir) throws IOException {
    return isCompressed(dir) ? loadDequantized(dir) : LlamaModel.load(dir);
  }

  /**
   * The input quantization a compressed-tensors checkpoint declares, or null when its activations stay in float. Only
   * static symmetric INT8 per-tensor input activations (what this platform writes for W8A8) are simulated.
   *
   * @throws CorruptCheckpointException if the config asks for another activation scheme, or a quantized layer has no
   *     {@code input_scale}
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
      boolean supported = !input.path("dynamic").asBoolean(false) && input.path("num_bits").asInt() == 8
          && "int".equals(input.path("type").asText()) && "tensor".equals(input.path("strategy").asText())
          && input.path("symmetric").asBoolean(true);
      if (!supported) {
        throw new CorruptCheckpointException(dir, "input_activations " + input
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
        throw new CorruptCheckpointException(dir, "declares static input activations but " + module
            + " has no input_scale");
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
