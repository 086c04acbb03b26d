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
import java.lang.foreign.ValueLayout;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.SequencedMap;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The sparse-24-bitmask layout against the reference's rules (compressed-tensors 0.12.2 .. 0.14
 * {@code sparse_24_bitmask.py}, {@code utils/helpers.py pack_bitmasks}; vLLM {@code
 * compressed_tensors.py supports_cutlass_24}, {@code schemes/compressed_tensors_24.py}): bytes laid
 * out by hand, bit-exact round trips, whole checkpoints through the conformance checker and the
 * reader, and the refusals.
 */
class Sparse24BitmaskTest {

  private static final ObjectMapper JSON = new ObjectMapper();
  private static final String DOWN = "model.layers.0.mlp.down_proj"; // [32, 64]

  @TempDir Path dir;

  /**
   * Three rows of 16 columns; the kept columns of each row, and the bitmask bytes numpy.packbits(
   * axis=-1, bitorder="little") gives for them, worked out by hand: row 0 keeps {0,3,5,6 | 8,9,12,
   * 14} -> 1+8+32+64 = 0x69, 1+2+16+64 = 0x53; row 1 keeps {1,2,4,7 | 10,11,13,15} -> 2+4+16+128 =
   * 0x96, 4+8+32+128 = 0xAC; row 2 keeps {0,1,6,7 | 8,10,13,15} -> 1+2+64+128 = 0xC3, 1+4+32+128 =
   * 0xA5.
   */
  private static final int[][] KEPT = {
    {0, 3, 5, 6, 8, 9, 12, 14}, {1, 2, 4, 7, 10, 11, 13, 15}, {0, 1, 6, 7, 8, 10, 13, 15}
  };

  private static final byte[] HAND_BITMASK = {
    (byte) 0x69, (byte) 0x53, (byte) 0x96, (byte) 0xAC, (byte) 0xC3, (byte) 0xA5
  };

  /** Row r, column c holds 10r + c + 1 where kept, 0 elsewhere. */
  private static float[] handDense() {
    float[] w = new float[3 * 16];
    for (int r = 0; r < 3; r++) {
      for (int c : KEPT[r]) {
        w[r * 16 + c] = 10 * r + c + 1;
      }
    }
    return w;
  }

  private static float[] handValues() {
    float[] v = new float[3 * 8];
    int i = 0;
    for (int r = 0; r < 3; r++) {
      for (int c : KEPT[r]) {
        v[i++] = 10 * r + c + 1;
      }
    }
    return v;
  }

  private static byte[] bytes(float[] values, DType dtype) {
    return TensorCodec.encodeFloats(values, dtype).toArray(ValueLayout.JAVA_BYTE);
  }

  @Test
  void shouldPackTheBitmaskLeastSignificantBitFirstWhenCompressingAHandMadeTensor() {
    Sparse24Bitmask.Compressed c =
        Sparse24Bitmask.compress("m", DType.BF16, 3, 16, bytes(handDense(), DType.BF16));

    assertThat(c.bitmask()).containsExactly(HAND_BITMASK);
    assertThat(c.values()).containsExactly(bytes(handValues(), DType.BF16));
    SequencedMap<String, TensorSource> t = c.tensors("m");
    assertThat(t.keySet()).containsExactly("m.shape", "m.compressed", "m.bitmask");
    assertThat(t.get("m.shape").dtype()).isEqualTo(DType.I64);
    assertThat(t.get("m.shape").shape())
        .as("torch.tensor(shape).reshape(-1, 1)")
        .containsExactly(2, 1);
    assertThat(
            TensorCodec.bytesToLongs(
                ((TensorData) t.get("m.shape")).data().toArray(ValueLayout.JAVA_BYTE)))
        .containsExactly(3, 16);
    assertThat(t.get("m.compressed").dtype()).isEqualTo(DType.BF16);
    assertThat(t.get("m.compressed").shape()).containsExactly(3, 8);
    assertThat(t.get("m.bitmask").dtype()).isEqualTo(DType.U8);
    assertThat(t.get("m.bitmask").shape()).containsExactly(3, 2);
  }

  @Test
  void shouldDecodeHandLaidOutBytesToTheExpectedValues() {
    byte[] dense =
        Sparse24Bitmask.decompress(DType.F16, 3, 16, bytes(handValues(), DType.F16), HAND_BITMASK);

    assertThat(TensorCodec.decodeFloats(java.lang.foreign.MemorySegment.ofArray(dense), DType.F16))
        .containsExactly(handDense());
  }

  @Test
  void shouldRoundTripBitForBitWhenCompressedAndDecompressed() {
    SplittableRandom random = new SplittableRandom(7);
    for (DType dtype : List.of(DType.F32, DType.F16, DType.BF16, DType.I8, DType.F8_E4M3)) {
      int rows = 8;
      int cols = 24; // 3 bitmask bytes a row
      int size = dtype.byteSize();
      byte[] dense = new byte[rows * cols * size];
      for (int r = 0; r < rows; r++) {
        for (int g = 0; g < cols; g += 4) {
          int keep = random.nextInt(6); // pairs, or fewer non-zeros
          int a = keep < 4 ? keep : 0;
          int b = keep < 3 ? keep + 1 : 3;
          for (int i = 0; i < 4; i++) {
            int off = (r * cols + g + i) * size;
            boolean nonZero = (i == a || i == b) && keep != 5;
            for (int k = 0; k < size; k++) {
              dense[off + k] = nonZero ? (byte) (1 + random.nextInt(120)) : 0;
            }
            if (!nonZero && keep == 5 && i == 2) {
              dense[off + size - 1] = (byte) 0x80; // a negative zero in a group of zeros
            }
          }
        }
      }
      Sparse24Bitmask.Compressed c = Sparse24Bitmask.compress("m", dtype, rows, cols, dense);
      assertThat(c.values()).hasSize(rows * cols / 2 * size);
      assertThat(c.bitmask()).hasSize(rows * 3);
      assertThat(Sparse24Bitmask.decompress(dtype, rows, cols, c.values(), c.bitmask()))
          .as(dtype.name())
          .containsExactly(dense);
    }
  }

  @Test
  void shouldRefuseAWeightThatIsNotTwoOfFourWhenCompressing() {
    float[] w = handDense();
    w[16 + 5] = 0.5f; // row 1, columns 4..7 now hold columns 4, 5 and 7
    assertThatThrownBy(() -> Sparse24Bitmask.compress(DOWN, DType.F32, 3, 16, bytes(w, DType.F32)))
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessageContaining(
            DOWN + " is not 2:4 sparse: row 1, columns 4..7 hold 3 non-zero values");
  }

  @Test
  void shouldRefuseABitmaskThatMarksTooManyColumnsWhenDecompressing() {
    byte[] mask = HAND_BITMASK.clone();
    mask[0] |= 0x02; // row 0 marks 9 columns of 16
    assertThatThrownBy(
            () ->
                Sparse24Bitmask.decompress(DType.F32, 3, 16, bytes(handValues(), DType.F32), mask))
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessageContaining("bitmask row 0 marks more than 8 columns");
  }

  private static ObjectNode quantizationConfig(String groups) throws Exception {
    return (ObjectNode)
        JSON.readTree(
            "{\"quant_method\": \"compressed-tensors\", \"sparsity_config\": {\"format\": \"dense\","
                + " \"sparsity_structure\": \"2:4\", \"targets\": [\"Linear\"]}"
                + (groups == null ? "" : ", \"config_groups\": {\"group_0\": " + groups + "}")
                + "}");
  }

  @Test
  void vllmShouldRunOnlySparseOnlyAndEightBitW8A8LayersCompressed() throws Exception {
    assertThat(Sparse24Bitmask.vllmRefusal(quantizationConfig(null))).isNull();
    String int8 = "{\"num_bits\": 8, \"type\": \"int\", \"strategy\": \"channel\"}";
    String int8Input = "{\"num_bits\": 8, \"type\": \"int\", \"strategy\": \"tensor\"}";
    String fp8Token =
        "{\"num_bits\": 8, \"type\": \"float\", \"strategy\": \"token\", \"dynamic\": true}";
    assertThat(
            Sparse24Bitmask.vllmRefusal(
                quantizationConfig(
                    "{\"weights\": " + int8 + ", \"input_activations\": " + int8Input + "}")))
        .isNull();
    assertThat(
            Sparse24Bitmask.vllmRefusal(
                quantizationConfig(
                    "{\"weights\": {\"num_bits\": 8, \"type\": \"float\", \"strategy\": \"tensor\"},"
                        + " \"input_activations\": "
                        + fp8Token
                        + "}")))
        .isNull();
    assertThat(
            Sparse24Bitmask.vllmRefusal(
                quantizationConfig(
                    "{\"weights\": {\"num_bits\": 4, \"type\": \"int\", \"strategy\": \"group\","
                        + " \"group_size\": 128}, \"input_activations\": null}")))
        .contains("quantizes weights only (4-bit int)")
        .contains("compressed_tensors/compressed_tensors.py get_scheme / supports_cutlass_24")
        .contains("returns False for weight-only quantization");
    assertThat(
            Sparse24Bitmask.vllmRefusal(
                quantizationConfig(
                    "{\"weights\": " + int8 + ", \"input_activations\": " + fp8Token + "}")))
        .contains("mixes int weights with float activations")
        .contains("schemes/compressed_tensors_24.py _get_params_dtype");
    assertThat(
            Sparse24Bitmask.vllmRefusal(
                quantizationConfig(
                    "{\"weights\": {\"num_bits\": 8, \"type\": \"int\", \"strategy\": \"group\","
                        + " \"group_size\": 32}, \"input_activations\": "
                        + int8Input
                        + "}")))
        .contains("takes 8-bit tensor/channel weights with 8-bit tensor/token activations only");
  }

  /** Random weights with the two smallest of every group of 4 zeroed in each linear but lm_head. */
  static Map<String, float[]> pruned(LlamaConfig config, long seed) {
    Map<String, float[]> tensors = CompressedTensorsTest.randomTensors(config, seed);
    for (String m : LlamaTensorNames.linearModules(config)) {
      if (m.equals(LlamaTensorNames.LM_HEAD_MODULE)) {
        continue;
      }
      float[] w = tensors.get(LlamaTensorNames.weight(m));
      for (int g = 0; g < w.length; g += 4) {
        for (int drop = 0; drop < 2; drop++) {
          int smallest = -1;
          for (int i = g; i < g + 4; i++) {
            if (w[i] != 0 && (smallest < 0 || Math.abs(w[i]) < Math.abs(w[smallest]))) {
              smallest = i;
            }
          }
          w[smallest] = 0;
        }
      }
    }
    return tensors;
  }

  private static QuantizationScheme.Sparsity sparsity(LlamaConfig config) {
    List<String> targets = new ArrayList<>(LlamaTensorNames.linearModules(config));
    targets.remove(LlamaTensorNames.LM_HEAD_MODULE);
    return new QuantizationScheme.Sparsity("2:4", targets, 0.5);
  }

  /** A dense 2:4-pruned checkpoint as the pruner writes it (dense sparsity_config). */
  private static void writeDenseSparse(Path out, LlamaConfig config, Map<String, float[]> tensors)
      throws Exception {
    Files.createDirectories(out);
    DType dtype = QuantizationScheme.modelDtype(config);
    Map<String, TensorSource> sources = new LinkedHashMap<>();
    for (Map.Entry<String, long[]> e : LlamaTensorNames.shapes(config).entrySet()) {
      sources.put(e.getKey(), TensorData.ofFloats(dtype, e.getValue(), tensors.get(e.getKey())));
    }
    SafetensorsWriter.write(out.resolve(Checkpoint.SINGLE_FILE), sources, Map.of("format", "pt"));
    CompressedTensors.writeSparseConfig(out, config, sparsity(config));
  }

  @Test
  void shouldWriteAConformingCheckpointThatDecompressesToTheDenseOneWhenSparseOnly()
      throws Exception {
    for (String torchDtype : List.of("float32", "bfloat16")) {
      LlamaConfig config = CompressedTensorsTest.tinyConfig().withTorchDtype(torchDtype);
      Path dense = dir.resolve("dense-" + torchDtype);
      Path packed = dir.resolve("bitmask-" + torchDtype);
      writeDenseSparse(dense, config, pruned(config, 3));

      Sparse24Bitmask.compressCheckpoint(dense, packed);

      assertThat(CompressedTensorsConformance.violations(packed)).as(torchDtype).isEmpty();
      JsonNode s =
          JSON.readTree(packed.resolve("config.json").toFile())
              .path("quantization_config")
              .path("sparsity_config");
      assertThat(s.path("format").asText()).isEqualTo("sparse-24-bitmask");
      assertThat(s.path("sparsity_structure").asText()).isEqualTo("2:4");
      DType modelDtype = QuantizationScheme.modelDtype(config);
      try (Checkpoint c = Checkpoint.open(packed)) {
        assertThat(c.contains(DOWN + ".weight")).isFalse();
        assertThat(c.info(DOWN + ".compressed").dtype()).isEqualTo(modelDtype);
        assertThat(c.info(DOWN + ".compressed").shape()).containsExactly(32, 32);
        assertThat(c.info(DOWN + ".bitmask").dtype()).isEqualTo(DType.U8);
        assertThat(c.info(DOWN + ".bitmask").shape()).containsExactly(32, 8);
        assertThat(c.info(DOWN + ".shape").dtype()).isEqualTo(DType.I64);
        assertThat(c.info(DOWN + ".shape").shape()).containsExactly(2, 1);
        assertThat(c.contains("lm_head.weight")).as("lm_head stays dense").isTrue();
      }
      Path back = dir.resolve("back-" + torchDtype);
      CompressedTensors.decompress(packed, back);
      try (Checkpoint original = Checkpoint.open(dense);
          Checkpoint restored = Checkpoint.open(back)) {
        for (String name : LlamaTensorNames.shapes(config).keySet()) {
          assertThat(restored.floats(name)).as(name).containsExactly(original.floats(name));
        }
      }
    }
  }

  @Test
  void shouldCompressTheInt8CodesAndKeepTheScalesWhenW8A8() throws Exception {
    LlamaConfig config = CompressedTensorsTest.tinyConfig().withTorchDtype("bfloat16");
    Map<String, float[]> tensors = pruned(config, 11);
    QuantizationScheme scheme =
        new QuantizationScheme(QuantizedWeight.Kind.INT8_CHANNEL, 16, true, List.of("lm_head"))
            .withSparsity(sparsity(config));
    Map<String, QuantizedWeight> quantized = new LinkedHashMap<>();
    Map<String, Float> inputScales = new LinkedHashMap<>();
    for (String m : sparsity(config).targets()) {
      long[] shape = LlamaTensorNames.shapes(config).get(LlamaTensorNames.weight(m));
      quantized.put(
          m,
          GroupQuantizer.int8PerChannel(
              tensors.get(LlamaTensorNames.weight(m)), (int) shape[0], (int) shape[1]));
      inputScales.put(m, 0.02f);
    }
    Path dense = dir.resolve("w8a8");
    Path packed = dir.resolve("w8a8-bitmask");
    CompressedTensors.write(dense, config, tensors, quantized, inputScales, scheme);

    Sparse24Bitmask.compressCheckpoint(dense, packed);

    assertThat(CompressedTensorsConformance.violations(packed)).isEmpty();
    try (Checkpoint c = Checkpoint.open(packed)) {
      assertThat(c.info(DOWN + ".compressed").dtype())
          .as("the int8 codes, 2:4-compressed")
          .isEqualTo(DType.I8);
      assertThat(c.info(DOWN + ".compressed").shape()).containsExactly(32, 32);
      assertThat(c.info(DOWN + ".weight_scale").shape()).containsExactly(32, 1);
      assertThat(c.info(DOWN + ".input_scale").shape()).containsExactly(1);
      assertThat(c.contains(DOWN + ".weight")).isFalse();
    }
    Map<String, QuantizedWeight> before = CompressedTensors.readQuantized(dense);
    Map<String, QuantizedWeight> after = CompressedTensors.readQuantized(packed);
    assertThat(after.keySet()).isEqualTo(before.keySet());
    for (String m : before.keySet()) {
      assertThat(after.get(m).codes()).as(m).containsExactly(before.get(m).codes());
      assertThat(after.get(m).scales()).as(m).containsExactly(before.get(m).scales());
    }
    assertThat(CompressedTensors.readInputScales(packed))
        .isEqualTo(CompressedTensors.readInputScales(dense));
  }

  @Test
  void shouldRefuseWeightOnlyQuantizationNamingVllmsRuleWhenCompressing() throws Exception {
    LlamaConfig config = CompressedTensorsTest.tinyConfig();
    Map<String, float[]> tensors = pruned(config, 5);
    QuantizationScheme scheme =
        new QuantizationScheme(QuantizedWeight.Kind.INT4_GROUP, 16, false, List.of("lm_head"))
            .withSymmetric(true)
            .withSparsity(sparsity(config));
    Map<String, QuantizedWeight> quantized = new LinkedHashMap<>();
    for (String m : sparsity(config).targets()) {
      long[] shape = LlamaTensorNames.shapes(config).get(LlamaTensorNames.weight(m));
      quantized.put(
          m,
          GroupQuantizer.int4Group(
              tensors.get(LlamaTensorNames.weight(m)), (int) shape[0], (int) shape[1], 16, true));
    }
    Path w4 = dir.resolve("w4a16");
    CompressedTensors.write(w4, config, tensors, quantized, Map.of(), scheme);

    assertThatThrownBy(() -> Sparse24Bitmask.compressCheckpoint(w4, dir.resolve("out")))
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessageContaining(
            "sparse-24-bitmask refused: config_groups.group_0 quantizes weights only (4-bit int)")
        .hasMessageContaining(
            "vLLM model_executor/layers/quantization/compressed_tensors/compressed_tensors.py");
  }

  @Test
  void conformanceShouldFlagABitmaskThatIsNotTwoOfFourOrAWeightLeftBeside() throws Exception {
    LlamaConfig config = CompressedTensorsTest.tinyConfig();
    Path dense = dir.resolve("dense");
    Path packed = dir.resolve("packed");
    writeDenseSparse(dense, config, pruned(config, 9));
    Sparse24Bitmask.compressCheckpoint(dense, packed);
    Map<String, TensorSource> tensors = new LinkedHashMap<>();
    try (Checkpoint c = Checkpoint.open(packed)) {
      for (String name : c.tensorNames()) {
        byte[] b = c.bytes(name);
        if (name.equals(DOWN + ".bitmask")) {
          b[0] = (byte) 0x07; // row 0: columns 0..3 keep 3, columns 4..7 keep 0
        }
        tensors.put(name, TensorData.ofBytes(c.info(name).dtype(), c.info(name).shape(), b));
      }
      tensors.put(DOWN + ".weight", TensorData.ofFloats(new long[] {32, 64}, new float[32 * 64]));
    }
    SafetensorsWriter.write(
        packed.resolve(Checkpoint.SINGLE_FILE), tensors, Map.of("format", "pt"));

    assertThat(CompressedTensorsConformance.violations(packed))
        .anyMatch(v -> v.contains(DOWN + ".weight present next to the sparse-24-bitmask tensors"))
        .anyMatch(
            v ->
                v.contains(DOWN + ".bitmask marks 3 of columns 0..3 in row 0")
                    && v.contains("ops.cutlass_sparse_compress"));
  }
}
