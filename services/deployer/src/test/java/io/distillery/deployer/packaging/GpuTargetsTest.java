package io.distillery.deployer.packaging;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.distillery.deployer.DeployerParams;
import io.distillery.deployer.TestCheckpoints;
import io.distillery.model.config.LlamaConfig;
import io.distillery.model.quant.CompressedTensors;
import io.distillery.model.quant.CompressedTensorsConformance;
import io.distillery.model.quant.QuantizationScheme;
import io.distillery.model.quant.QuantizedWeight;
import io.distillery.model.safetensors.Checkpoint;
import io.distillery.model.safetensors.DType;
import io.distillery.model.tokenizer.ByteTokenizer;
import io.distillery.schemas.common.ArtefactRef;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Every scheme x target combination either becomes a package whose configuration follows the
 * engine's rules or is refused with a message naming the rule (issue 17's "Must show"), plus the
 * TensorRT-LLM export's layout.
 */
class GpuTargetsTest {

  static final ObjectMapper JSON = new ObjectMapper();
  static final List<String> IGNORE = List.of("lm_head");

  @TempDir Path tmp;

  private Path teacher;

  /** The outcome expected of one target: null = packaged, else a fragment of the refusal. */
  private record Expect(String scheme, String local, String vllm, String trtllm) {}

  private Path checkpoint(String scheme) throws Exception {
    Path dir = tmp.resolve("ckpt-" + scheme);
    QuantizationScheme w4 =
        new QuantizationScheme(QuantizedWeight.Kind.INT4_GROUP, 32, false, IGNORE);
    return switch (scheme) {
      case "dense" -> TestCheckpoints.dense(dir, 1, false);
      case "w4-sym-g32" -> TestCheckpoints.quantized(dir, 1, w4.withSymmetric(true));
      case "w4-sym-g64" ->
          TestCheckpoints.quantized(
              dir,
              1,
              new QuantizationScheme(QuantizedWeight.Kind.INT4_GROUP, 64, false, IGNORE)
                  .withSymmetric(true));
      case "w4-asym-g32" -> TestCheckpoints.quantized(dir, 1, w4);
      case "w4-sym-g48" ->
          TestCheckpoints.quantized(
              dir,
              1,
              new QuantizationScheme(QuantizedWeight.Kind.INT4_GROUP, 48, false, IGNORE)
                  .withSymmetric(true),
              LlamaConfig.builder()
                  .vocabSize(ByteTokenizer.VOCAB_SIZE)
                  .hiddenSize(96)
                  .intermediateSize(192)
                  .numHiddenLayers(1)
                  .numAttentionHeads(4)
                  .numKeyValueHeads(2)
                  .maxPositionEmbeddings(128)
                  .build());
      case "w8a16" ->
          TestCheckpoints.quantized(
              dir, 1, new QuantizationScheme(QuantizedWeight.Kind.INT8_CHANNEL, 32, false, IGNORE));
      case "w8a8" ->
          TestCheckpoints.quantized(
              dir, 1, new QuantizationScheme(QuantizedWeight.Kind.INT8_CHANNEL, 32, true, IGNORE));
      case "fp8" ->
          TestCheckpoints.quantized(
              dir, 1, new QuantizationScheme(QuantizedWeight.Kind.FP8_CHANNEL, 32, false, IGNORE));
      case "w8a16-int-quantized" -> {
        // what the quantizer wrote for w8-rtn before issue 17: int-quantized, I8 weight, no input
        // activations
        TestCheckpoints.quantized(
            dir, 1, new QuantizationScheme(QuantizedWeight.Kind.INT8_CHANNEL, 32, true, IGNORE));
        ObjectNode root = (ObjectNode) JSON.readTree(dir.resolve("config.json").toFile());
        ((ObjectNode) root.at("/quantization_config/config_groups/group_0"))
            .putNull("input_activations");
        Files.writeString(dir.resolve("config.json"), root.toString());
        yield dir;
      }
      case "dense-2:4" -> {
        TestCheckpoints.dense(dir, 1, false);
        CompressedTensors.writeSparseConfig(
            dir,
            TestCheckpoints.CONFIG,
            new QuantizationScheme.Sparsity("2:4", List.of("model.layers.0.mlp.down_proj"), 0.5));
        yield dir;
      }
      default -> throw new IllegalArgumentException(scheme);
    };
  }

  private Path pkg(Path checkpoint, String target, String name) throws Exception {
    Path pkg = tmp.resolve("pkg-" + name);
    DjlServingPackage.assembleModel(checkpoint, teacher, pkg);
    String sha = "ab" + "0".repeat(62);
    ArtefactRef ref =
        ArtefactRef.newBuilder()
            .setUri("file:///store/artefacts/ab/" + sha + "/")
            .setSha256(sha)
            .setBytes(1)
            .setFormat(DjlServingPackage.MODEL_FORMAT)
            .build();
    DeployerParams p = JSON.readValue("{\"target\":\"" + target + "\"}", DeployerParams.class);
    DjlServingPackage.write(
        pkg,
        new DjlServingPackage.Spec("d", "run", "run/deploy", "deploy", "q", ref, null, ref, p));
    return pkg;
  }

  @Test
  void everySchemeAndTargetShouldBePackagedOrRefusedNamingTheRule() throws Exception {
    teacher = TestCheckpoints.dense(tmp.resolve("teacher"), 2, true);
    List<Expect> table =
        List.of(
            new Expect("dense", null, null, null),
            new Expect(
                "w4-sym-g32", null, null, "finegrained_mixed_dtype_gemm takes groups of [64, 128]"),
            new Expect("w4-sym-g64", null, null, null),
            new Expect("w4-asym-g32", null, null, "W4A16_AWQ is symmetric"),
            new Expect("w4-sym-g48", null, "MARLIN_SUPPORTED_GROUP_SIZES", "groups of [64, 128]"),
            new Expect("w8a16", null, null, "INT8 weight-only"),
            new Expect("w8a8", null, null, "W8A8_SQ_PER_CHANNEL"),
            new Expect("fp8", null, null, "FP8 weight-only"),
            new Expect(
                "w8a16-int-quantized",
                null,
                "asserts weights.type == QuantizationType.FLOAT",
                "no such weight-only algorithm"),
            new Expect("dense-2:4", null, null, null));
    for (Expect e : table) {
      Path ckpt = checkpoint(e.scheme());
      Map<String, String> expected = new LinkedHashMap<>();
      expected.put("local", e.local());
      expected.put("gpu-vllm", e.vllm());
      expected.put("gpu-trtllm", e.trtllm());
      for (Map.Entry<String, String> t : expected.entrySet()) {
        String name = e.scheme() + "-" + t.getKey();
        if (t.getValue() != null) {
          assertThatThrownBy(() -> pkg(ckpt, t.getKey(), name))
              .as(name)
              .isInstanceOf(IllegalArgumentException.class)
              .hasMessageContaining("target " + t.getKey())
              .hasMessageContaining(t.getValue());
          continue;
        }
        Path pkg = pkg(ckpt, t.getKey(), name);
        JsonNode manifest = JSON.readTree(pkg.resolve("manifest.json").toFile());
        assertThat(manifest.path("target").asText()).as(name).isEqualTo(t.getKey());
        if (t.getKey().equals("gpu-vllm")) {
          assertThat(CompressedTensorsConformance.violations(pkg.resolve("model")))
              .as(name)
              .isEmpty();
          Properties gpu = new Properties();
          gpu.load(Files.newBufferedReader(pkg.resolve("gpu/serving.properties")));
          assertThat(gpu.getProperty("option.quantize"))
              .as(name + ": vllm_user_guide.md, no option.quantize for " + "a pre-quantized model")
              .isNull();
        }
        if (t.getKey().equals("gpu-trtllm")) {
          assertThat(pkg.resolve("trtllm/config.json")).as(name).exists();
          assertThat(
                  JSON.readTree(pkg.resolve("trtllm/config.json").toFile())
                      .has("quantization_config"))
              .as(name + ": TensorRT-LLM raises on a compressed-tensors quantization_config")
              .isFalse();
          assertThat(Files.readString(pkg.resolve("README.md")))
              .as(name)
              .contains("trtllm-serve /opt/ml/model/trtllm --backend pytorch");
          assertThat(pkg.resolve("trtllm/tokenizer.json")).exists();
        }
        if (e.scheme().equals("dense-2:4") && t.getKey().equals("gpu-vllm")) {
          assertThat(manifest.path("warnings").toString()).contains("Hopper");
        }
      }
    }
  }

  @Test
  void trtLlmExportShouldHoldW4A16AwqTensorsPackedAlongTheOutputDim() throws Exception {
    teacher = TestCheckpoints.dense(tmp.resolve("teacher"), 2, true);
    Path ckpt = checkpoint("w4-sym-g64");
    Path pkg = pkg(ckpt, "gpu-trtllm", "export");
    JsonNode hf =
        JSON.readTree(pkg.resolve("trtllm/hf_quant_config.json").toFile()).path("quantization");
    // llmapi/llm_utils.py _update_from_hf_quant_config reads these keys
    assertThat(hf.path("quant_algo").asText()).isEqualTo("W4A16_AWQ");
    assertThat(hf.path("group_size").asInt()).isEqualTo(64);
    assertThat(hf.path("has_zero_point").asBoolean()).isFalse();
    assertThat(hf.path("pre_quant_scale").asBoolean()).isTrue();
    assertThat(hf.path("exclude_modules").toString()).isEqualTo("[\"lm_head\"]");
    Map<String, QuantizedWeight> codes = CompressedTensors.readQuantized(ckpt);
    try (Checkpoint c = Checkpoint.open(pkg.resolve("trtllm"))) {
      String down = "model.layers.0.mlp.down_proj"; // [64, 128]
      String q = "model.layers.0.self_attn.q_proj"; // [64, 64]
      // _torch/modules/linear.py W4A16_AWQ_LinearMethod: int8 weight [out/2, in] (transposed to
      // [in, out/2])
      assertThat(c.info(down + ".weight").dtype()).isEqualTo(DType.I8);
      assertThat(c.info(down + ".weight").shape()).containsExactly(32, 128);
      assertThat(c.info(down + ".weight_scale").shape())
          .as("[out, in/group], transposed on load")
          .containsExactly(64, 2);
      assertThat(c.info(down + ".weight_scale").dtype())
          .as("float32 model exported bf16")
          .isEqualTo(DType.BF16);
      assertThat(c.info(down + ".pre_quant_scale").shape())
          .as("load_weights_vanilla reads it")
          .containsExactly(128);
      assertThat(c.contains(q + ".pre_quant_scale"))
          .as("fused q/k/v: folded into the norm")
          .isFalse();
      assertThat(c.floats(down + ".pre_quant_scale")).containsOnly(1f);
      int[] back = TrtLlmExport.unpackAlongRows(c.bytes(down + ".weight"), 64, 128);
      assertThat(back).containsExactly(codes.get(down).codes());
      byte first = c.bytes(down + ".weight")[0];
      assertThat(first & 0xF)
          .as("row 0 in the low nibble")
          .isEqualTo(codes.get(down).codes()[0] & 0xF);
      assertThat((first >> 4) & 0xF)
          .as("row 1 in the high nibble")
          .isEqualTo(codes.get(down).codes()[128] & 0xF);
      assertThat(c.info("lm_head.weight").dtype()).isEqualTo(DType.BF16);
    }
    assertThat(
            JSON.readTree(pkg.resolve("trtllm/config.json").toFile()).path("torch_dtype").asText())
        .isEqualTo("bfloat16");
  }
}
