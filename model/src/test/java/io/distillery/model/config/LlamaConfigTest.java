package io.distillery.model.config;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class LlamaConfigTest {

  private static final Path SOURCE = Path.of("models/x/config.json");

  /** meta-llama/Llama-3.1-8B config.json as published. */
  private static final String LLAMA_31_8B =
      """
            {
              "architectures": ["LlamaForCausalLM"],
              "attention_bias": false,
              "attention_dropout": 0.0,
              "bos_token_id": 128000,
              "eos_token_id": [128001, 128008, 128009],
              "hidden_act": "silu",
              "hidden_size": 4096,
              "initializer_range": 0.02,
              "intermediate_size": 14336,
              "max_position_embeddings": 131072,
              "mlp_bias": false,
              "model_type": "llama",
              "num_attention_heads": 32,
              "num_hidden_layers": 32,
              "num_key_value_heads": 8,
              "pretraining_tp": 1,
              "rms_norm_eps": 1e-05,
              "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                               "original_max_position_embeddings": 8192, "rope_type": "llama3"},
              "rope_theta": 500000.0,
              "tie_word_embeddings": false,
              "torch_dtype": "bfloat16",
              "transformers_version": "4.43.0.dev0",
              "use_cache": true,
              "vocab_size": 128256
            }""";

  /** Qwen/Qwen2-0.5B config.json as published. */
  private static final String QWEN2_05B =
      """
            {
              "architectures": ["Qwen2ForCausalLM"],
              "attention_dropout": 0.0,
              "bos_token_id": 151643,
              "eos_token_id": 151643,
              "hidden_act": "silu",
              "hidden_size": 896,
              "initializer_range": 0.02,
              "intermediate_size": 4864,
              "max_position_embeddings": 131072,
              "max_window_layers": 24,
              "model_type": "qwen2",
              "num_attention_heads": 14,
              "num_hidden_layers": 24,
              "num_key_value_heads": 2,
              "rms_norm_eps": 1e-06,
              "rope_theta": 1000000.0,
              "sliding_window": 131072,
              "tie_word_embeddings": true,
              "torch_dtype": "bfloat16",
              "transformers_version": "4.40.1",
              "use_cache": true,
              "use_sliding_window": false,
              "vocab_size": 151936
            }""";

  /** mistralai/Mistral-7B-v0.1 config.json as published. */
  private static final String MISTRAL_7B =
      """
            {
              "architectures": ["MistralForCausalLM"],
              "bos_token_id": 1,
              "eos_token_id": 2,
              "hidden_act": "silu",
              "hidden_size": 4096,
              "initializer_range": 0.02,
              "intermediate_size": 14336,
              "max_position_embeddings": 32768,
              "model_type": "mistral",
              "num_attention_heads": 32,
              "num_hidden_layers": 32,
              "num_key_value_heads": 8,
              "rms_norm_eps": 1e-05,
              "rope_theta": 10000.0,
              "sliding_window": 4096,
              "tie_word_embeddings": false,
              "torch_dtype": "bfloat16",
              "transformers_version": "4.34.0.dev0",
              "use_cache": true,
              "vocab_size": 32000
            }""";

  @TempDir Path dir;

  @Test
  void shouldParseLlama31WhenRopeScalingIsLlama3() throws IOException {
    LlamaConfig config = LlamaConfig.parse(LLAMA_31_8B, SOURCE);
    assertThat(config.architecture()).isEqualTo(Architecture.LLAMA);
    assertThat(config.headDim()).isEqualTo(128);
    assertThat(config.numKeyValueGroups()).isEqualTo(4);
    assertThat(config.keyValueWidth()).isEqualTo(1024);
    assertThat(config.eosTokenIds()).containsExactly(128001, 128008, 128009);
    assertThat(config.bosTokenId()).isEqualTo(128000);
    assertThat(config.rmsNormEps()).isEqualTo(1e-5);
    assertThat(config.ropeTheta()).isEqualTo(500000.0);
    assertThat(config.ropeScaling()).isEqualTo(RopeScaling.llama3(8.0, 1.0, 4.0, 8192));
    assertThat(config.tieWordEmbeddings()).isFalse();
    assertThat(config.attentionBias()).isFalse();
    assertThat(config.torchDtype()).isEqualTo("bfloat16");
  }

  @Test
  void shouldEnableQkvBiasWhenArchitectureIsQwen2() throws IOException {
    LlamaConfig config = LlamaConfig.parse(QWEN2_05B, SOURCE);
    assertThat(config.architecture()).isEqualTo(Architecture.QWEN2);
    assertThat(config.attentionBias()).isTrue();
    assertThat(config.outputProjectionBias()).isFalse();
    assertThat(config.slidingWindow()).as("use_sliding_window=false").isNull();
    assertThat(config.headDim()).isEqualTo(64);
    assertThat(config.tieWordEmbeddings()).isTrue();
    assertThat(LlamaTensorNames.shapes(config))
        .containsKeys(
            "model.layers.0.self_attn.q_proj.bias",
            "model.layers.0.self_attn.k_proj.bias",
            "model.layers.0.self_attn.v_proj.bias")
        .doesNotContainKeys("model.layers.0.self_attn.o_proj.bias", "lm_head.weight");
    assertThat(LlamaTensorNames.shapes(config).get("model.layers.0.self_attn.k_proj.bias"))
        .containsExactly(128);
  }

  @Test
  void shouldKeepSlidingWindowWhenArchitectureIsMistral() throws IOException {
    LlamaConfig config = LlamaConfig.parse(MISTRAL_7B, SOURCE);
    assertThat(config.architecture()).isEqualTo(Architecture.MISTRAL);
    assertThat(config.slidingWindow()).isEqualTo(4096);
    assertThat(config.eosTokenIds()).containsExactly(2);
    assertThat(config.ropeScaling()).isNull();
  }

  @Test
  void shouldParseBackToEqualConfigWhenWrittenAsJson() throws IOException {
    for (String json : List.of(LLAMA_31_8B, QWEN2_05B, MISTRAL_7B)) {
      LlamaConfig config = LlamaConfig.parse(json, SOURCE);
      config.write(dir);
      assertThat(LlamaConfig.read(dir)).isEqualTo(config);
    }
  }

  @Test
  void shouldReadLinearAndDynamicScalingWhenLegacyTypeKeyIsUsed() throws IOException {
    LlamaConfig linear =
        LlamaConfig.parse(
            tiny("\"rope_scaling\": {\"type\": \"linear\", \"factor\": 2.0}"), SOURCE);
    assertThat(linear.ropeScaling()).isEqualTo(RopeScaling.linear(2.0));
    LlamaConfig dynamic =
        LlamaConfig.parse(tiny("\"rope_scaling\": {\"type\": \"dynamic\", \"factor\": 4}"), SOURCE);
    assertThat(dynamic.ropeScaling()).isEqualTo(RopeScaling.dynamic(4.0));
    LlamaConfig none =
        LlamaConfig.parse(tiny("\"rope_scaling\": {\"rope_type\": \"default\"}"), SOURCE);
    assertThat(none.ropeScaling()).isNull();
  }

  @Test
  void shouldRefuseWhenArchitectureIsUnsupported() {
    String gpt2 =
        tiny("\"x\": 0")
            .replace("LlamaForCausalLM", "GPT2LMHeadModel")
            .replace("\"llama\"", "\"gpt2\"");
    assertThatThrownBy(() -> LlamaConfig.parse(gpt2, SOURCE))
        .isInstanceOf(ModelConfigException.class)
        .hasMessageContaining(SOURCE.toString())
        .hasMessageContaining("unsupported architecture [GPT2LMHeadModel]")
        .hasMessageContaining("LlamaForCausalLM");
    String noArchitectures = "{\"model_type\": \"falcon\", \"hidden_size\": 8}";
    assertThatThrownBy(() -> LlamaConfig.parse(noArchitectures, SOURCE))
        .isInstanceOf(ModelConfigException.class)
        .hasMessageContaining("falcon");
  }

  @Test
  void shouldRefuseWhenHeadsDoNotDivideHiddenSize() {
    assertThatThrownBy(
            () ->
                LlamaConfig.parse(
                    tiny("\"x\": 0")
                        .replace("\"num_attention_heads\": 4", "\"num_attention_heads\": 5")
                        .replace("\"num_key_value_heads\": 2", "\"num_key_value_heads\": 5"),
                    SOURCE))
        .isInstanceOf(ModelConfigException.class)
        .hasMessageContaining("num_attention_heads 5 does not divide hidden_size 32");
  }

  @Test
  void shouldRefuseWhenKeyValueHeadsDoNotDivideHeads() {
    assertThatThrownBy(
            () ->
                LlamaConfig.parse(
                    tiny("\"x\": 0")
                        .replace("\"num_key_value_heads\": 2", "\"num_key_value_heads\": 3"),
                    SOURCE))
        .isInstanceOf(ModelConfigException.class)
        .hasMessageContaining("num_key_value_heads 3 does not divide num_attention_heads 4");
    assertThatThrownBy(() -> TinyConfig.builder().numKeyValueHeads(3).build())
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessageContaining("num_key_value_heads 3");
  }

  @Test
  void shouldRefuseWhenRopeScalingTypeIsUnknown() {
    assertThatThrownBy(
            () ->
                LlamaConfig.parse(
                    tiny("\"rope_scaling\": {\"rope_type\": \"yarn\", \"factor\": 4.0}"), SOURCE))
        .isInstanceOf(ModelConfigException.class)
        .hasMessageContaining("'yarn' is not supported");
    assertThatThrownBy(
            () ->
                LlamaConfig.parse(
                    tiny("\"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8.0}"), SOURCE))
        .isInstanceOf(ModelConfigException.class)
        .hasMessageContaining("low_freq_factor");
  }

  @Test
  void shouldRefuseWhenValuesAreMistypedOrMissing() {
    assertThatThrownBy(
            () ->
                LlamaConfig.parse(
                    tiny("\"x\": 0").replace("\"hidden_size\": 32", "\"hidden_size\": 32.5"),
                    SOURCE))
        .isInstanceOf(ModelConfigException.class)
        .hasMessageContaining("hidden_size is 32.5, not a 32-bit integer");
    assertThatThrownBy(
            () -> LlamaConfig.parse(tiny("\"x\": 0").replace("\"vocab_size\": 64,", ""), SOURCE))
        .isInstanceOf(ModelConfigException.class)
        .hasMessageContaining("missing vocab_size");
    assertThatThrownBy(() -> LlamaConfig.parse(tiny("\"hidden_act\": \"gelu\""), SOURCE))
        .isInstanceOf(ModelConfigException.class)
        .hasMessageContaining("hidden_act 'gelu'");
    assertThatThrownBy(() -> LlamaConfig.parse("[1, 2]", SOURCE))
        .isInstanceOf(ModelConfigException.class)
        .hasMessageContaining("not a JSON object");
    assertThatThrownBy(() -> LlamaConfig.parse("{\"a\": ", SOURCE))
        .isInstanceOf(ModelConfigException.class)
        .hasMessageContaining("not valid JSON");
  }

  @Test
  void shouldRefuseWhenConfigFileIsMissing() {
    assertThatThrownBy(() -> LlamaConfig.read(dir)).isInstanceOf(IOException.class);
    assertThat(Files.exists(dir.resolve("config.json"))).isFalse();
  }

  private static String tiny(String extra) {
    return """
                {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 64, "hidden_size": 32,
                 "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
                 %s}"""
        .formatted(extra);
  }

  /** Builder preset for the tiny config. */
  private static final class TinyConfig {
    static LlamaConfig.Builder builder() {
      return LlamaConfig.builder()
          .vocabSize(64)
          .hiddenSize(32)
          .intermediateSize(64)
          .numHiddenLayers(2)
          .numAttentionHeads(4);
    }
  }
}
