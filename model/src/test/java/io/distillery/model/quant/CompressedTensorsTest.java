package io.distillery.model.quant;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.distillery.model.config.LlamaConfig;
import io.distillery.model.config.LlamaTensorNames;
import io.distillery.model.safetensors.Checkpoint;
import io.distillery.model.safetensors.DType;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class CompressedTensorsTest {

  @TempDir Path dir;

  static LlamaConfig tinyConfig() {
    return LlamaConfig.builder()
        .vocabSize(64)
        .hiddenSize(32)
        .intermediateSize(64)
        .numHiddenLayers(1)
        .numAttentionHeads(4)
        .numKeyValueHeads(2)
        .maxPositionEmbeddings(64)
        .rmsNormEps(1e-5)
        .build();
  }

  static Map<String, float[]> randomTensors(LlamaConfig config, long seed) {
    SplittableRandom random = new SplittableRandom(seed);
    Map<String, float[]> out = new LinkedHashMap<>();
    for (Map.Entry<String, long[]> e : LlamaTensorNames.shapes(config).entrySet()) {
      long size = 1;
      for (long d : e.getValue()) {
        size *= d;
      }
      float[] v = new float[(int) size];
      for (int i = 0; i < v.length; i++) {
        v[i] = e.getKey().endsWith("norm.weight") ? 1f : (float) (random.nextGaussian() * 0.1);
      }
      out.put(e.getKey(), v);
    }
    return out;
  }

  private Map<String, QuantizedWeight> quantizeAll(
      LlamaConfig config, Map<String, float[]> tensors, QuantizedWeight.Kind kind) {
    Map<String, QuantizedWeight> out = new LinkedHashMap<>();
    for (String module : LlamaTensorNames.linearModules(config)) {
      if (module.equals("lm_head")) {
        continue;
      }
      float[] w = tensors.get(module + ".weight");
      long[] shape = LlamaTensorNames.shapes(config).get(module + ".weight");
      int rows = (int) shape[0];
      int cols = (int) shape[1];
      out.put(
          module,
          switch (kind) {
            case INT4_GROUP -> GroupQuantizer.int4Group(w, rows, cols, 16);
            case INT8_CHANNEL -> GroupQuantizer.int8PerChannel(w, rows, cols);
            case FP8_CHANNEL -> GroupQuantizer.fp8PerChannel(w, rows, cols);
          });
    }
    return out;
  }

  @Test
  void shouldReadBackTheQuantizersDequantizedWeightsWhenWritingEachFormat() throws Exception {
    LlamaConfig config = tinyConfig();
    Map<String, float[]> tensors = randomTensors(config, 3);
    for (QuantizedWeight.Kind kind : QuantizedWeight.Kind.values()) {
      Path out = dir.resolve(kind.name());
      Map<String, QuantizedWeight> quantized = quantizeAll(config, tensors, kind);
      boolean w8a8 = kind == QuantizedWeight.Kind.INT8_CHANNEL;
      Map<String, Float> inputScales = new LinkedHashMap<>();
      if (w8a8) {
        quantized.keySet().forEach(m -> inputScales.put(m, 0.05f));
      }
      CompressedTensors.write(
          out,
          config,
          tensors,
          quantized,
          inputScales,
          new QuantizationScheme(kind, 16, w8a8, List.of("lm_head")));

      Map<String, QuantizedWeight> back = CompressedTensors.readQuantized(out);
      assertThat(back.keySet()).isEqualTo(quantized.keySet());
      for (String module : quantized.keySet()) {
        assertThat(back.get(module).dequantize())
            .as(kind + " " + module)
            .containsExactly(quantized.get(module).dequantize());
      }
      assertThat(CompressedTensors.readInputScales(out)).isEqualTo(inputScales);
      assertThat(CompressedTensors.isCompressed(out)).isTrue();
      Path dense = dir.resolve(kind.name() + "-dense");
      CompressedTensors.decompress(out, dense);
      if (kind == QuantizedWeight.Kind.FP8_CHANNEL) {
        String header = headerOf(out.resolve("model.safetensors"));
        assertThat(header)
            .contains("\"model.layers.0.mlp.down_proj.weight\":{\"dtype\":\"F8_E4M3\"");
      }
      try (Checkpoint c = Checkpoint.open(dense)) {
        assertThat(c.floats("model.layers.0.mlp.down_proj.weight"))
            .containsExactly(quantized.get("model.layers.0.mlp.down_proj").dequantize());
        assertThat(c.floats("lm_head.weight")).containsExactly(tensors.get("lm_head.weight"));
      }
    }
  }

  static String headerOf(Path file) throws java.io.IOException {
    byte[] bytes = java.nio.file.Files.readAllBytes(file);
    long length =
        java.nio.ByteBuffer.wrap(bytes, 0, 8).order(java.nio.ByteOrder.LITTLE_ENDIAN).getLong();
    return new String(bytes, 8, (int) length, java.nio.charset.StandardCharsets.UTF_8);
  }

  @Test
  void shouldEmitPackQuantizedKeysAndConfigWhenWritingInt4() throws Exception {
    LlamaConfig config = tinyConfig();
    Map<String, float[]> tensors = randomTensors(config, 4);
    CompressedTensors.write(
        dir,
        config,
        tensors,
        quantizeAll(config, tensors, QuantizedWeight.Kind.INT4_GROUP),
        Map.of(),
        new QuantizationScheme(QuantizedWeight.Kind.INT4_GROUP, 16, false, List.of("lm_head")));
    try (Checkpoint c = Checkpoint.open(dir)) {
      String m = "model.layers.0.mlp.down_proj"; // [32, 64]
      assertThat(c.info(m + ".weight_packed").dtype()).isEqualTo(DType.I32);
      assertThat(c.info(m + ".weight_packed").shape()).containsExactly(32, 8);
      assertThat(c.info(m + ".weight_scale").shape()).containsExactly(32, 4);
      assertThat(c.info(m + ".weight_zero_point").shape()).containsExactly(4, 4);
      assertThat(c.info(m + ".weight_shape").shape()).containsExactly(2);
      assertThat(c.contains(m + ".weight")).isFalse();
      assertThat(c.contains("lm_head.weight")).isTrue();
    }
    JsonNode q =
        new ObjectMapper().readTree(dir.resolve("config.json").toFile()).get("quantization_config");
    assertThat(q.get("quant_method").asText()).isEqualTo("compressed-tensors");
    assertThat(q.get("format").asText()).isEqualTo("pack-quantized");
    JsonNode weights = q.at("/config_groups/group_0/weights");
    assertThat(weights.get("num_bits").asInt()).isEqualTo(4);
    assertThat(weights.get("strategy").asText()).isEqualTo("group");
    assertThat(weights.get("group_size").asInt()).isEqualTo(16);
    assertThat(weights.get("symmetric").asBoolean()).isFalse();
    assertThat(q.at("/config_groups/group_0/targets/0").asText()).isEqualTo("Linear");
    assertThat(q.at("/ignore/0").asText()).isEqualTo("lm_head");
  }
}
