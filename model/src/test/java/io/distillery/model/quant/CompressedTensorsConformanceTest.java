package io.distillery.model.quant;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.distillery.model.config.LlamaConfig;
import io.distillery.model.config.LlamaTensorNames;
import io.distillery.model.safetensors.Checkpoint;
import io.distillery.model.safetensors.DType;
import io.distillery.model.safetensors.SafetensorsWriter;
import io.distillery.model.safetensors.TensorCodec;
import io.distillery.model.safetensors.TensorData;
import io.distillery.model.safetensors.TensorSource;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashSet;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The conformance suite: every scheme the quantizer writes, checked against rules transcribed from
 * compressed-tensors' validators and vLLM's compressed-tensors loader (file and condition in each
 * message; revisions in docs/formats.md). Besides {@link CompressedTensorsConformance}, the rules a
 * test can state directly are asserted here on their own: the config key sets, the per-scheme
 * tensor names, dtypes and shapes, and the packing bit order decoded by hand.
 */
class CompressedTensorsConformanceTest {

  private static final ObjectMapper JSON = new ObjectMapper();
  private static final String DOWN = "model.layers.0.mlp.down_proj"; // [32, 64]

  @TempDir Path dir;

  /**
   * One writable scheme: the stored kind, the scheme options, and the quantizer that produces
   * matching codes.
   */
  private record Case(String name, QuantizationScheme scheme) {}

  private static List<Case> cases() {
    List<String> ignore = List.of("lm_head");
    QuantizationScheme w8a16 =
        new QuantizationScheme(QuantizedWeight.Kind.INT8_CHANNEL, 16, false, ignore);
    QuantizationScheme w4 =
        new QuantizationScheme(QuantizedWeight.Kind.INT4_GROUP, 16, false, ignore);
    return List.of(
        new Case("w8a16 (w8-rtn)", w8a16),
        new Case("w4a16 symmetric", w4.withSymmetric(true)),
        new Case("w4a16 asymmetric", w4),
        new Case(
            "w8a8 static",
            new QuantizationScheme(QuantizedWeight.Kind.INT8_CHANNEL, 16, true, ignore)),
        new Case(
            "fp8 weight-only",
            new QuantizationScheme(QuantizedWeight.Kind.FP8_CHANNEL, 16, false, ignore)));
  }

  private static QuantizedWeight quantize(QuantizationScheme s, float[] w, int rows, int cols) {
    return switch (s.kind()) {
      case INT8_CHANNEL -> GroupQuantizer.int8PerChannel(w, rows, cols);
      case INT4_GROUP -> GroupQuantizer.int4Group(w, rows, cols, s.groupSize(), s.symmetric());
      case FP8_CHANNEL -> GroupQuantizer.fp8PerChannel(w, rows, cols);
    };
  }

  /**
   * Writes a tiny checkpoint of {@code scheme} (every linear but lm_head quantized); returns the
   * codes by module.
   */
  private Map<String, QuantizedWeight> write(
      Path out, LlamaConfig config, QuantizationScheme scheme) throws Exception {
    Map<String, float[]> tensors = CompressedTensorsTest.randomTensors(config, 5);
    Map<String, QuantizedWeight> quantized = new LinkedHashMap<>();
    Map<String, Float> inputScales = new LinkedHashMap<>();
    for (String m : LlamaTensorNames.linearModules(config)) {
      if (m.equals("lm_head")) {
        continue;
      }
      long[] shape = LlamaTensorNames.shapes(config).get(m + ".weight");
      quantized.put(
          m, quantize(scheme, tensors.get(m + ".weight"), (int) shape[0], (int) shape[1]));
      if (scheme.staticInputActivations()) {
        inputScales.put(m, 0.02f);
      }
    }
    CompressedTensors.write(out, config, tensors, quantized, inputScales, scheme);
    return quantized;
  }

  private static JsonNode quantizationConfig(Path out) throws Exception {
    return JSON.readTree(out.resolve("config.json").toFile()).get("quantization_config");
  }

  @Test
  void everySchemeShouldPassTheReferenceAndVllmRulesWhenWritten() throws Exception {
    for (Case c : cases()) {
      for (String dtype : List.of("float32", "bfloat16")) {
        LlamaConfig config = CompressedTensorsTest.tinyConfig().withTorchDtype(dtype);
        Path out = dir.resolve(c.name().replace(' ', '_') + "-" + dtype);
        write(out, config, c.scheme());
        assertThat(CompressedTensorsConformance.violations(out))
            .as(c.name() + " " + dtype)
            .isEmpty();
      }
    }
  }

  @Test
  void configKeysShouldBeOnlyThoseTheReferenceModelsAccept() throws Exception {
    for (Case c : cases()) {
      Path out = dir.resolve(c.name().replace(' ', '_'));
      write(out, CompressedTensorsTest.tinyConfig(), c.scheme());
      JsonNode q = quantizationConfig(out);
      assertThat(names(q))
          .as(
              c.name()
                  + ": top-level keys = QuantizationConfig fields + model_compressor.py "
                  + "update_config's version/sparsity_config/transform_config")
          .containsExactlyInAnyOrder(
              "config_groups",
              "format",
              "global_compression_ratio",
              "ignore",
              "kv_cache_scheme",
              "quant_method",
              "quantization_status",
              "sparsity_config",
              "transform_config",
              "version");
      JsonNode group = q.at("/config_groups/group_0");
      assertThat(CompressedTensorsConformance.SCHEME_KEYS)
          .as(c.name() + ": compressed-tensors quant_scheme.py QuantizationScheme is extra=forbid")
          .containsAll(names(group));
      assertThat(CompressedTensorsConformance.ARGS_KEYS)
          .as(
              c.name()
                  + ": compressed-tensors quant_args.py QuantizationArgs is extra=forbid (0.12.2 keys; no scale_dtype/"
                  + "zp_dtype so that 0.12 readers parse it)")
          .containsAll(names(group.get("weights")));
      if (group.get("input_activations").isObject()) {
        assertThat(CompressedTensorsConformance.ARGS_KEYS)
            .as(c.name() + ": input_activations QuantizationArgs")
            .containsAll(names(group.get("input_activations")));
      }
      assertThat(q.get("ignore"))
          .as(
              c.name()
                  + ": llm-compressor writes ignore [lm_head]; vLLM get_quant_method "
                  + "quantizes LinearBase only")
          .isEqualTo(JSON.readTree("[\"lm_head\"]"));
      assertThat(q.get("version").asText())
          .as("model_compressor.py update_config writes version")
          .isEqualTo(CompressedTensors.FORMAT_VERSION);
      assertThat(q.get("quantization_status").asText()).isEqualTo("compressed");
      assertThat(q.get("format").asText())
          .as(c.name() + ": group format = top format (one scheme)")
          .isEqualTo(group.get("format").asText());
    }
  }

  @Test
  void formatShouldBeWhatTheReferenceChoosesAndWhatVllmAccepts() throws Exception {
    Map<String, String> expected =
        Map.of(
            "w8a16 (w8-rtn)",
            "pack-quantized",
            "w4a16 symmetric",
            "pack-quantized",
            "w4a16 asymmetric",
            "pack-quantized",
            "w8a8 static",
            "int-quantized",
            "fp8 weight-only",
            "naive-quantized");
    for (Case c : cases()) {
      Path out = dir.resolve(c.name().replace(' ', '_'));
      write(out, CompressedTensorsTest.tinyConfig(), c.scheme());
      JsonNode q = quantizationConfig(out);
      JsonNode group = q.at("/config_groups/group_0");
      String format = q.get("format").asText();
      assertThat(format)
          .as(
              c.name()
                  + ": compressed-tensors compressors/format.py (int weights without input "
                  + "activations -> pack-quantized; with -> int-quantized; float weights alone -> naive-quantized)")
          .isEqualTo(expected.get(c.name()));
      boolean activationFormat = CompressedTensorsConformance.ACTIVATION_FORMATS.contains(format);
      if (activationFormat && group.get("input_activations").isNull()) {
        assertThat(group.at("/weights/type").asText())
            .as(
                c.name()
                    + ": vLLM compressed_tensors.py "
                    + "_quantization_scheme_map_from_config: activation format requires input_activations or float weights")
            .isEqualTo("float");
      }
      if (format.equals("pack-quantized")) {
        assertThat(group.at("/weights/num_bits").asInt())
            .as(c.name() + ": vLLM compressed_tensors_wNa16.py " + "WNA16_SUPPORTED_TYPES_MAP bits")
            .isIn(4, 8);
        assertThat(group.at("/weights/strategy").asText())
            .as(c.name() + ": vLLM _is_wNa16_group_channel")
            .isIn("group", "channel");
        assertThat(group.get("input_activations").isNull())
            .as(c.name() + ": WNA16 has no input activations")
            .isTrue();
      }
    }
  }

  @Test
  void tensorsShouldHaveTheNamesDtypesAndShapesVllmRegisters() throws Exception {
    LlamaConfig config = CompressedTensorsTest.tinyConfig().withTorchDtype("bfloat16");
    // W8A16: compressed_tensors_wNa16.py: weight_packed int32 [out, in / (32 // 8)], weight_scale
    // params_dtype
    // [out, 1] (channel), weight_shape int64 [2]; no zero point (symmetric)
    Path w8 = dir.resolve("w8a16");
    write(w8, config, cases().get(0).scheme());
    try (Checkpoint c = Checkpoint.open(w8)) {
      assertThat(c.info(DOWN + ".weight_packed").dtype())
          .as("wNa16.py weight_packed int32")
          .isEqualTo(DType.I32);
      assertThat(c.info(DOWN + ".weight_packed").shape())
          .as("wNa16.py [out, in / pack_factor 4]")
          .containsExactly(32, 16);
      assertThat(c.info(DOWN + ".weight_scale").dtype())
          .as("wNa16.py weight_scale in params_dtype (bf16 model)")
          .isEqualTo(DType.BF16);
      assertThat(c.info(DOWN + ".weight_scale").shape())
          .as("channel: [out, 1]")
          .containsExactly(32, 1);
      assertThat(c.info(DOWN + ".weight_shape").dtype())
          .as("wNa16.py weight_shape int64")
          .isEqualTo(DType.I64);
      assertThat(c.contains(DOWN + ".weight"))
          .as("no I8 weight: W8A16 is not int-quantized")
          .isFalse();
      assertThat(c.contains(DOWN + ".weight_zero_point")).as("symmetric: no zero point").isFalse();
      assertThat(c.info("lm_head.weight").dtype())
          .as("lm_head dense, model dtype")
          .isEqualTo(DType.BF16);
      assertThat(c.contains("lm_head.weight_packed"))
          .as("vLLM ParallelLMHead has no weight_packed")
          .isFalse();
      assertThat(c.info("model.embed_tokens.weight").dtype()).isEqualTo(DType.BF16);
    }
    // W4A16 symmetric g16: weight_packed [out, in / 8], weight_scale [out, in / 16], no
    // weight_zero_point
    Path w4 = dir.resolve("w4");
    write(w4, config, cases().get(1).scheme());
    try (Checkpoint c = Checkpoint.open(w4)) {
      assertThat(c.info(DOWN + ".weight_packed").shape())
          .as("wNa16.py [out, in / pack_factor 8]")
          .containsExactly(32, 8);
      assertThat(c.info(DOWN + ".weight_scale").shape())
          .as("wNa16.py [out, in / group]")
          .containsExactly(32, 4);
      assertThat(c.contains(DOWN + ".weight_zero_point"))
          .as("symmetric: vLLM uint4b8, no zero point")
          .isFalse();
    }
    // W4A16 asymmetric: weight_zero_point int32 [out / pack_factor, groups] (packed along dim 0)
    Path w4a = dir.resolve("w4a");
    write(w4a, config, cases().get(2).scheme());
    try (Checkpoint c = Checkpoint.open(w4a)) {
      assertThat(c.info(DOWN + ".weight_zero_point").dtype()).isEqualTo(DType.I32);
      assertThat(c.info(DOWN + ".weight_zero_point").shape())
          .as("wNa16.py zero points [out // 8, groups]")
          .containsExactly(4, 4);
    }
    // W8A8: compressed_tensors_w8a8_int8.py: weight int8 [out, in], weight_scale [out, 1],
    // input_scale [1]
    Path w8a8 = dir.resolve("w8a8");
    write(w8a8, config, cases().get(3).scheme());
    try (Checkpoint c = Checkpoint.open(w8a8)) {
      assertThat(c.info(DOWN + ".weight").dtype())
          .as("w8a8_int8.py weight int8")
          .isEqualTo(DType.I8);
      assertThat(c.info(DOWN + ".weight_scale").shape()).containsExactly(32, 1);
      assertThat(c.info(DOWN + ".input_scale").shape())
          .as("w8a8_int8.py static input_scale [1]")
          .containsExactly(1);
    }
    // FP8 weight-only: compressed_tensors_w8a16_fp8.py: weight float8_e4m3fn [out, in],
    // weight_scale [out, 1]
    Path fp8 = dir.resolve("fp8");
    write(fp8, config, cases().get(4).scheme());
    try (Checkpoint c = Checkpoint.open(fp8)) {
      assertThat(c.info(DOWN + ".weight").dtype())
          .as("w8a16_fp8.py weight float8_e4m3fn")
          .isEqualTo(DType.F8_E4M3);
      assertThat(c.info(DOWN + ".weight_scale").shape()).containsExactly(32, 1);
      assertThat(c.contains(DOWN + ".input_scale")).isFalse();
    }
  }

  @Test
  void packedWordsShouldHoldValueIAtBitsBitsTimesIWithTheOffsetWhenDecodedByHand()
      throws Exception {
    // compressed-tensors pack_quantized.py pack_to_int32: unsigned = code + 2^(bits-1); value i of
    // a word at bits
    // [bits*i, bits*i + bits); decoded here by hand, not through Int32Packing
    for (Case c : List.of(cases().get(0), cases().get(1), cases().get(2))) {
      Path out = dir.resolve(c.name().replace(' ', '_'));
      Map<String, QuantizedWeight> codes =
          write(out, CompressedTensorsTest.tinyConfig(), c.scheme());
      int bits = c.scheme().bits();
      int perWord = 32 / bits;
      QuantizedWeight q = codes.get(DOWN);
      try (Checkpoint file = Checkpoint.open(out)) {
        int[] words = TensorCodec.bytesToInts(file.bytes(DOWN + ".weight_packed"));
        int wordsPerRow = q.cols() / perWord;
        for (int r = 0; r < q.rows(); r++) {
          for (int col = 0; col < q.cols(); col++) {
            int word = words[r * wordsPerRow + col / perWord];
            int unsigned = (word >>> (bits * (col % perWord))) & ((1 << bits) - 1);
            assertThat(unsigned - (1 << (bits - 1)))
                .as(c.name() + " row " + r + " col " + col + ": pack_quantized.py bit order")
                .isEqualTo(q.codes()[r * q.cols() + col]);
          }
        }
      }
    }
  }

  @Test
  void readerShouldDecodeAHandLaidEightBitPackedFixture() throws Exception {
    // a checkpoint laid out by hand from the reference's rules: down_proj 8-bit pack-quantized per
    // channel,
    // row r of weight_packed = words of unsigned bytes 0x80 + r + k (code r + k); scale 0.5 on
    // every row
    LlamaConfig config = CompressedTensorsTest.tinyConfig();
    Map<String, float[]> dense = CompressedTensorsTest.randomTensors(config, 9);
    Map<String, TensorSource> tensors = new LinkedHashMap<>();
    for (Map.Entry<String, long[]> e : LlamaTensorNames.shapes(config).entrySet()) {
      if (!e.getKey().equals(DOWN + ".weight")) {
        tensors.put(e.getKey(), TensorData.ofFloats(e.getValue(), dense.get(e.getKey())));
      }
    }
    int rows = 32;
    int cols = 64;
    int[] words = new int[rows * cols / 4];
    for (int r = 0; r < rows; r++) {
      for (int w = 0; w < cols / 4; w++) {
        int word = 0;
        for (int i = 0; i < 4; i++) {
          int code = (r + w * 4 + i) % 100 - 50;
          word |= (code + 128) << (8 * i);
        }
        words[r * (cols / 4) + w] = word;
      }
    }
    tensors.put(
        DOWN + ".weight_packed",
        TensorData.ofBytes(DType.I32, new long[] {rows, cols / 4}, TensorCodec.intsToBytes(words)));
    float[] scales = new float[rows];
    java.util.Arrays.fill(scales, 0.5f);
    tensors.put(
        DOWN + ".weight_scale", TensorData.ofFloats(DType.BF16, new long[] {rows, 1}, scales));
    tensors.put(
        DOWN + ".weight_shape",
        TensorData.ofBytes(DType.I64, new long[] {2}, TensorCodec.longsToBytes(rows, cols)));
    SafetensorsWriter.write(dir.resolve(Checkpoint.SINGLE_FILE), tensors, Map.of("format", "pt"));
    String weights =
        "{\"num_bits\": 8, \"type\": \"int\", \"symmetric\": true, \"strategy\": \"channel\"}";
    ObjectNode root = (ObjectNode) JSON.readTree(config.toJson());
    root.set(
        "quantization_config",
        JSON.readTree(
            "{\"quant_method\": \"compressed-tensors\", \"format\": "
                + "\"pack-quantized\", \"config_groups\": {\"group_0\": {\"targets\": [\"Linear\"], \"weights\": "
                + weights
                + "}}, \"ignore\": [\"lm_head\"]}"));
    Files.writeString(dir.resolve("config.json"), root.toString());

    QuantizedWeight q = CompressedTensors.readQuantized(dir).get(DOWN);
    assertThat(q.kind()).isEqualTo(QuantizedWeight.Kind.INT8_CHANNEL);
    float[] values = q.dequantize();
    assertThat(values[0]).isEqualTo(-25f); // code -50 * 0.5
    assertThat(values[1]).isEqualTo(-24.5f); // code -49
    assertThat(values[5 * cols + 10]).isEqualTo(((5 + 10) % 100 - 50) * 0.5f);
    assertThat(CompressedTensors.readQuantized(dir).keySet()).containsExactly(DOWN);
  }

  @Test
  void readerShouldDecodeAHandLaidFourBitAsymmetricFixture() throws Exception {
    // one word 0x76543210 holds codes -8..-1 (value i at bits 4i, +8 offset); zero points packed
    // along dim 0
    Path out = dir.resolve("w4");
    Map<String, QuantizedWeight> codes =
        write(out, CompressedTensorsTest.tinyConfig(), cases().get(2).scheme());
    try (Checkpoint file = Checkpoint.open(out)) {
      int[] zp =
          TensorCodec.bytesToInts(
              file.bytes(DOWN + ".weight_zero_point")); // [4, 4]: rows 8j..8j+7 of group g
      QuantizedWeight q = codes.get(DOWN);
      for (int word = 0; word < 4; word++) {
        for (int g = 0; g < 4; g++) {
          for (int i = 0; i < 8; i++) {
            int unsigned = (zp[word * 4 + g] >>> (4 * i)) & 0xF;
            assertThat(unsigned - 8)
                .as("zero point of row " + (word * 8 + i) + " group " + g)
                .isEqualTo(q.zeroPoints()[(word * 8 + i) * 4 + g]);
          }
        }
      }
    }
    assertThat(CompressedTensors.readQuantized(out).get(DOWN).dequantize())
        .containsExactly(codes.get(DOWN).dequantize());
  }

  @Test
  void writerShouldRefuseToQuantizeTheLmHeadOrTheEmbeddings() {
    QuantizedWeight q = GroupQuantizer.int8PerChannel(new float[64 * 32], 64, 32);
    for (String module : List.of("lm_head", "model.embed_tokens")) {
      assertThatThrownBy(
              () -> CompressedTensors.moduleTensors(module, q, null, cases().get(0).scheme()))
          .as(module)
          .isInstanceOf(IllegalArgumentException.class)
          .hasMessageContaining("must stay dense")
          .hasMessageContaining("get_quant_method");
    }
  }

  @Test
  void schemeShouldRefuseAnIgnoreListThatSplitsAFusedGroup() {
    assertThatThrownBy(
            () ->
                new QuantizationScheme(
                    QuantizedWeight.Kind.INT4_GROUP,
                    16,
                    false,
                    List.of("lm_head", "model.layers.0.self_attn.k_proj")))
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessageContaining("fused group model.layers.0.self_attn.qkv_proj")
        .hasMessageContaining("should_ignore_layer");
    assertThatThrownBy(
            () ->
                new QuantizationScheme(
                    QuantizedWeight.Kind.INT4_GROUP,
                    16,
                    false,
                    List.of("model.layers.1.mlp.up_proj")))
        .hasMessageContaining("gate_up_proj");
    new QuantizationScheme(
        QuantizedWeight.Kind.INT4_GROUP,
        16,
        false,
        List.of(
            "lm_head",
            "model.layers.0.mlp.gate_proj",
            "model.layers.0.mlp.up_proj",
            "model.layers.0.mlp.down_proj"));
  }

  @Test
  void checkerShouldCatchTheOutputsVllmRefused() throws Exception {
    LlamaConfig config = CompressedTensorsTest.tinyConfig();
    // what the platform wrote before issue 17: W8A16 as int-quantized with an I8 weight and no
    // input activations
    Path old = dir.resolve("old-w8a16");
    write(old, config, cases().get(3).scheme());
    ObjectNode root = (ObjectNode) JSON.readTree(old.resolve("config.json").toFile());
    ObjectNode group = (ObjectNode) root.at("/quantization_config/config_groups/group_0");
    group.putNull("input_activations");
    group.put("scale_dtype", "torch.float32");
    Files.writeString(old.resolve("config.json"), root.toString());
    assertThat(CompressedTensorsConformance.violations(old))
        .anyMatch(v -> v.contains("asserts weights.type == QuantizationType.FLOAT"))
        .anyMatch(v -> v.contains("unknown key 'scale_dtype'"));
    // a quantized lm_head (what exclude: [] produced): laid out by hand, the writer refuses it
    Path w4 = dir.resolve("w4");
    write(w4, config, cases().get(1).scheme());
    Map<String, TensorSource> tensors = new LinkedHashMap<>();
    try (Checkpoint c = Checkpoint.open(w4)) {
      for (String name : c.tensorNames()) {
        if (!name.equals("lm_head.weight")) {
          tensors.put(
              name, TensorData.ofBytes(c.info(name).dtype(), c.info(name).shape(), c.bytes(name)));
        }
      }
    }
    QuantizedWeight head = GroupQuantizer.int4Group(new float[64 * 32], 64, 32, 16, true);
    CompressedTensors.moduleTensors(DOWN, head, null, cases().get(1).scheme())
        .forEach((name, t) -> tensors.put(name.replace(DOWN, "lm_head"), t));
    Path quantizedHead = dir.resolve("head");
    Files.createDirectories(quantizedHead);
    SafetensorsWriter.write(
        quantizedHead.resolve(Checkpoint.SINGLE_FILE), tensors, Map.of("format", "pt"));
    ObjectNode r2 = (ObjectNode) JSON.readTree(w4.resolve("config.json").toFile());
    ((com.fasterxml.jackson.databind.node.ArrayNode) r2.at("/quantization_config/ignore"))
        .removeAll();
    Files.writeString(quantizedHead.resolve("config.json"), r2.toString());
    assertThat(CompressedTensorsConformance.violations(quantizedHead))
        .anyMatch(v -> v.contains("ignore lacks lm_head"))
        .anyMatch(v -> v.contains("lm_head is quantized or missing"));
  }

  @Test
  void twoAndThreeBitGroupsShouldRoundTripButBeReportedAsOutsideVllmsWna16Bits() throws Exception {
    for (int bits : new int[] {2, 3}) {
      LlamaConfig config = CompressedTensorsTest.tinyConfig();
      Map<String, float[]> tensors = CompressedTensorsTest.randomTensors(config, bits);
      QuantizationScheme scheme =
          new QuantizationScheme(QuantizedWeight.Kind.INT4_GROUP, 16, false, List.of("lm_head"))
              .withSymmetric(true)
              .withBits(bits);
      Map<String, QuantizedWeight> quantized = new LinkedHashMap<>();
      int max = (1 << (bits - 1)) - 1;
      for (String m : LlamaTensorNames.linearModules(config)) {
        if (m.equals("lm_head")) {
          continue;
        }
        long[] shape = LlamaTensorNames.shapes(config).get(m + ".weight");
        QuantizedWeight four =
            GroupQuantizer.int4Group(
                tensors.get(m + ".weight"), (int) shape[0], (int) shape[1], 16, true);
        int[] clipped = four.codes().clone();
        for (int i = 0; i < clipped.length; i++) {
          clipped[i] = Math.max(-max - 1, Math.min(max, clipped[i]));
        }
        quantized.put(
            m,
            new QuantizedWeight(
                QuantizedWeight.Kind.INT4_GROUP,
                four.rows(),
                four.cols(),
                16,
                clipped,
                four.scales(),
                null));
      }
      Path out = dir.resolve("w" + bits);
      CompressedTensors.write(out, config, tensors, quantized, Map.of(), scheme);
      try (Checkpoint c = Checkpoint.open(out)) {
        assertThat(c.info(DOWN + ".weight_packed").shape())
            .as(bits + " bits: pack factor 32 / bits")
            .containsExactly(32, (64 + 32 / bits - 1) / (32 / bits));
      }
      Map<String, QuantizedWeight> back = CompressedTensors.readQuantized(out);
      assertThat(back.get(DOWN).codes()).containsExactly(quantized.get(DOWN).codes());
      assertThat(CompressedTensorsConformance.violations(out))
          .as(bits + " bits")
          .anyMatch(v -> v.contains("WNA16_SUPPORTED_TYPES_MAP"));
    }
  }

  @Test
  void sparseConfigShouldFollowTheDenseSparsityCompressionConfig() throws Exception {
    LlamaConfig config = CompressedTensorsTest.tinyConfig();
    CompressedTensors.writeSparseConfig(
        dir, config, new QuantizationScheme.Sparsity("2:4", List.of(DOWN), 0.5));
    JsonNode q = quantizationConfig(dir);
    assertThat(names(q))
        .containsExactlyInAnyOrder(
            "quant_method", "sparsity_config", "transform_config", "version");
    JsonNode s = q.get("sparsity_config");
    assertThat(names(s))
        .as("CT config/base.py SparsityCompressionConfig fields + registry_requires_subclass")
        .containsExactlyInAnyOrder(
            "format",
            "global_sparsity",
            "ignore",
            "registry_requires_subclass",
            "sparsity_structure",
            "targets");
    assertThat(s.get("format").asText()).as("CT config/dense.py").isEqualTo("dense");
    assertThat(s.get("sparsity_structure").asText()).isEqualTo("2:4");
  }

  private static Set<String> names(JsonNode node) {
    Set<String> out = new HashSet<>();
    for (Iterator<String> it = node.fieldNames(); it.hasNext(); ) {
      out.add(it.next());
    }
    return out;
  }
}
