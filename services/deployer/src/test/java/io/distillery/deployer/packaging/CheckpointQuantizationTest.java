package io.distillery.deployer.packaging;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.api.Test;

class CheckpointQuantizationTest {

  static final ObjectMapper JSON = new ObjectMapper();

  static JsonNode config(
      String format,
      int bits,
      String type,
      String groupSize,
      boolean symmetric,
      boolean staticInput)
      throws Exception {
    return JSON.readTree(
        """
        {"model_type": "llama", "quantization_config": {"quant_method": "compressed-tensors", "format": "%s",
         "config_groups": {"group_0": {"targets": ["Linear"], "input_activations": %s,
           "weights": {"num_bits": %d, "type": "%s", "group_size": %s, "symmetric": %s}}}}}
        """
            .formatted(
                format,
                staticInput ? "{\"num_bits\": 8}" : "null",
                bits,
                type,
                groupSize,
                symmetric));
  }

  @Test
  void shouldReadEachLayoutTheQuantizerWritesAndTheOnesItWroteBefore() throws Exception {
    assertThat(CheckpointQuantization.of(config("pack-quantized", 4, "int", "128", false, false)))
        .isEqualTo(new CheckpointQuantization("w4a16", "pack-quantized", 4, 128, true, null));
    assertThat(
            CheckpointQuantization.of(config("pack-quantized", 4, "int", "64", true, false))
                .zeroPoint())
        .isFalse();
    assertThat(CheckpointQuantization.of(config("pack-quantized", 8, "int", "null", true, false)))
        .isEqualTo(new CheckpointQuantization("w8a16", "pack-quantized", 8, -1, false, null));
    assertThat(
            CheckpointQuantization.of(config("int-quantized", 8, "int", "null", true, true))
                .scheme())
        .isEqualTo("w8a8");
    assertThat(
            CheckpointQuantization.of(config("int-quantized", 8, "int", "null", true, false))
                .scheme())
        .as("W8A16 as written before issue 17")
        .isEqualTo("w8a16-int-quantized");
    assertThat(
            CheckpointQuantization.of(config("naive-quantized", 8, "float", "null", true, false))
                .scheme())
        .isEqualTo("fp8");
    assertThat(
            CheckpointQuantization.of(config("float-quantized", 8, "float", "null", true, false))
                .scheme())
        .as("FP8 weight-only as written before issue 17")
        .isEqualTo("fp8");
    assertThat(
            CheckpointQuantization.of(config("pack-quantized", 3, "int", "32", true, false))
                .scheme())
        .isEqualTo("w3a16");
    CheckpointQuantization dense =
        CheckpointQuantization.of(JSON.readTree("{\"model_type\": \"llama\"}"));
    assertThat(dense.quantized()).isFalse();
    CheckpointQuantization sparse =
        CheckpointQuantization.of(
            JSON.readTree(
                """
        {"quantization_config": {"quant_method": "compressed-tensors", "sparsity_config": {"format": "dense",
         "sparsity_structure": "2:4", "targets": []}}}"""));
    assertThat(sparse.quantized()).isFalse();
    assertThat(sparse.sparsity()).isEqualTo("2:4");
  }

  @Test
  void shouldRefuseAQuantizationItCannotServe() throws Exception {
    assertThatThrownBy(
            () ->
                CheckpointQuantization.of(
                    JSON.readTree(
                        "{\"quantization_config\": {\"quant_method\": \"bitsandbytes\"}}")))
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessageContaining("bitsandbytes");
    assertThatThrownBy(
            () ->
                CheckpointQuantization.of(config("sparse-bitmask", 8, "int", "null", true, false)))
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessageContaining("sparse-bitmask");
  }
}
