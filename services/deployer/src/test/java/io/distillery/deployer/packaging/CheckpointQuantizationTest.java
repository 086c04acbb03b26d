package io.distillery.deployer.packaging;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.api.Test;

class CheckpointQuantizationTest {

  static final ObjectMapper JSON = new ObjectMapper();

  static JsonNode config(String format, int bits, String groupSize, boolean symmetric, boolean staticInput)
      throws Exception {
    return JSON.readTree("""
        {"model_type": "llama", "quantization_config": {"quant_method": "compressed-tensors", "format": "%s",
         "config_groups": {"group_0": {"targets": ["Linear"], "input_activations": %s,
           "weights": {"num_bits": %d, "group_size": %s, "symmetric": %s}}}}}
        """.formatted(format, staticInput ? "{\"num_bits\": 8}" : "null", bits, groupSize, symmetric));
  }

  @Test
  void shouldMapEachCompressedTensorsLayoutToItsTensorRtLlmAlgorithm() throws Exception {
    CheckpointQuantization w4 = CheckpointQuantization.of(config("pack-quantized", 4, "128", false, false));
    assertThat(w4).isEqualTo(new CheckpointQuantization("w4a16", "pack-quantized", 4, 128, true));
    assertThat(w4.trtLlmQuantAlgo()).isEqualTo("W4A16_GPTQ");
    assertThat(w4.lmiQuantize()).isEqualTo("awq");

    CheckpointQuantization w8a8 = CheckpointQuantization.of(config("int-quantized", 8, "null", true, true));
    assertThat(w8a8.scheme()).isEqualTo("w8a8");
    assertThat(w8a8.trtLlmQuantAlgo()).isEqualTo("W8A8_SQ_PER_CHANNEL");
    assertThat(w8a8.lmiQuantize()).isEqualTo("smoothquant");

    CheckpointQuantization w8 = CheckpointQuantization.of(config("int-quantized", 8, "null", true, false));
    assertThat(w8.trtLlmQuantAlgo()).isEqualTo("W8A16");
    assertThat(w8.lmiQuantize()).isNull();

    CheckpointQuantization fp8 = CheckpointQuantization.of(config("float-quantized", 8, "null", true, false));
    assertThat(fp8.trtLlmQuantAlgo()).isEqualTo("FP8");
    assertThat(fp8.lmiQuantize()).isEqualTo("fp8");

    CheckpointQuantization dense = CheckpointQuantization.of(JSON.readTree("{\"model_type\": \"llama\"}"));
    assertThat(dense.quantized()).isFalse();
    assertThat(dense.trtLlmQuantAlgo()).isNull();
  }

  @Test
  void shouldWriteOnlyTheKeysThatApplyToTheLayout() throws Exception {
    String w8 = DjlServingPackage.gpuQuantization(CheckpointQuantization.of(config("int-quantized", 8, "null", true,
        false)));
    assertThat(w8).contains("option.quant_algo=W8A16\n").doesNotContain("option.quantize=")
        .doesNotContain("group_size").doesNotContain("has_zero_point");
    String fp8 = DjlServingPackage.gpuQuantization(CheckpointQuantization.of(config("float-quantized", 8, "null",
        true, false)));
    assertThat(fp8).contains("option.quantize=fp8\n").contains("option.quant_algo=FP8\n")
        .doesNotContain("awq_block_size");
  }

  @Test
  void shouldRefuseAQuantizationItCannotServe() throws Exception {
    assertThatThrownBy(() -> CheckpointQuantization.of(JSON.readTree(
        "{\"quantization_config\": {\"quant_method\": \"bitsandbytes\"}}")))
        .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("bitsandbytes");
    assertThatThrownBy(() -> CheckpointQuantization.of(config("pack-quantized", 3, "32", false, false)))
        .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("3 bits");
    assertThatThrownBy(() -> CheckpointQuantization.of(config("sparse-bitmask", 8, "null", true, false)))
        .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("sparse-bitmask");
  }
}
