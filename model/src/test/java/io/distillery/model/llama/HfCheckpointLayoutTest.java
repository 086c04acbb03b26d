package io.distillery.model.llama;

import static org.assertj.core.api.Assertions.assertThat;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.distillery.model.config.LlamaConfig;
import io.distillery.model.safetensors.DType;
import io.distillery.model.safetensors.SafetensorsFile;
import io.distillery.model.safetensors.TensorCodec;
import io.distillery.model.safetensors.TensorInfo;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * What {@code transformers.LlamaForCausalLM.from_pretrained(dir)} needs from a directory we write,
 * spelled out as fixtures from the HF format rather than derived from our own name helpers:
 *
 * <ul>
 *   <li>{@code model.safetensors} whose keys are exactly {@code LlamaForCausalLM.state_dict()} keys
 *       (modeling_llama.py: {@code model.embed_tokens}, {@code
 *       model.layers.N.self_attn.{q,k,v,o}_proj}, {@code model.layers.N.mlp.{gate,up,down}_proj},
 *       {@code model.layers.N.input_layernorm}, {@code model.layers.N.post_attention_layernorm},
 *       {@code model.norm}, {@code lm_head}; nn.Linear weights [out_features, in_features]), with
 *       {@code __metadata__.format == "pt"} (transformers refuses a safetensors archive without
 *       it);
 *   <li>{@code config.json} with the keys {@code LlamaConfig.__init__} takes, plus {@code
 *       architectures}, {@code model_type} and {@code torch_dtype}.
 * </ul>
 */
class HfCheckpointLayoutTest {

  /** vocab 64, hidden 32, 2 layers, 4 heads of 8, 2 key/value heads, intermediate 64, untied. */
  private static final Map<String, List<Long>> EXPECTED_TENSORS = expectedTensors();

  private static final Set<String> EXPECTED_CONFIG_KEYS =
      Set.of(
          "architectures",
          "attention_bias",
          "attention_dropout",
          "bos_token_id",
          "eos_token_id",
          "head_dim",
          "hidden_act",
          "hidden_size",
          "initializer_range",
          "intermediate_size",
          "max_position_embeddings",
          "mlp_bias",
          "model_type",
          "num_attention_heads",
          "num_hidden_layers",
          "num_key_value_heads",
          "pretraining_tp",
          "rms_norm_eps",
          "rope_scaling",
          "rope_theta",
          "tie_word_embeddings",
          "torch_dtype",
          "use_cache",
          "vocab_size");

  @TempDir Path dir;

  private NDManager manager;

  @BeforeEach
  void setUp() {
    manager = Engine.getEngine("PyTorch").newBaseManager();
  }

  @AfterEach
  void tearDown() {
    manager.close();
  }

  private static Map<String, List<Long>> expectedTensors() {
    Map<String, List<Long>> tensors = new LinkedHashMap<>();
    tensors.put("model.embed_tokens.weight", List.of(64L, 32L));
    for (int i = 0; i < 2; i++) {
      String p = "model.layers." + i + ".";
      tensors.put(p + "self_attn.q_proj.weight", List.of(32L, 32L));
      tensors.put(p + "self_attn.k_proj.weight", List.of(16L, 32L));
      tensors.put(p + "self_attn.v_proj.weight", List.of(16L, 32L));
      tensors.put(p + "self_attn.o_proj.weight", List.of(32L, 32L));
      tensors.put(p + "mlp.gate_proj.weight", List.of(64L, 32L));
      tensors.put(p + "mlp.up_proj.weight", List.of(64L, 32L));
      tensors.put(p + "mlp.down_proj.weight", List.of(32L, 64L));
      tensors.put(p + "input_layernorm.weight", List.of(32L));
      tensors.put(p + "post_attention_layernorm.weight", List.of(32L));
    }
    tensors.put("model.norm.weight", List.of(32L));
    tensors.put("lm_head.weight", List.of(64L, 32L));
    return tensors;
  }

  @Test
  void shouldWriteTransformersTensorNamesWhenSavingUntiedModel() throws IOException {
    try (LlamaModel model = LlamaModel.random(TinyModels.tiny(false), 3, manager)) {
      model.save(dir, DType.F32);
    }
    try (SafetensorsFile file = SafetensorsFile.open(dir.resolve("model.safetensors"))) {
      Map<String, List<Long>> written = new LinkedHashMap<>();
      for (TensorInfo info : file.tensors()) {
        written.put(info.name(), java.util.Arrays.stream(info.shape()).boxed().toList());
        assertThat(info.dtype()).isEqualTo(DType.F32);
      }
      assertThat(written).containsExactlyInAnyOrderEntriesOf(EXPECTED_TENSORS);
      assertThat(file.metadata()).containsEntry("format", "pt");
    }
    JsonNode config = new ObjectMapper().readTree(dir.resolve("config.json").toFile());
    assertThat(fieldNames(config)).isEqualTo(new TreeSet<>(EXPECTED_CONFIG_KEYS));
    assertThat(config.get("architectures").get(0).asText()).isEqualTo("LlamaForCausalLM");
    assertThat(config.get("model_type").asText()).isEqualTo("llama");
    assertThat(config.get("torch_dtype").asText()).isEqualTo("float32");
    assertThat(config.get("hidden_act").asText()).isEqualTo("silu");
    assertThat(config.get("num_key_value_heads").asInt()).isEqualTo(2);
    assertThat(config.get("head_dim").asInt()).isEqualTo(8);
    assertThat(config.get("tie_word_embeddings").asBoolean()).isFalse();
    assertThat(config.get("rope_scaling").isNull()).isTrue();
  }

  @Test
  void shouldOmitLmHeadWhenEmbeddingsAreTied() throws IOException {
    try (LlamaModel model = LlamaModel.random(TinyModels.tiny(true), 3, manager)) {
      model.save(dir, DType.BF16);
    }
    Map<String, List<Long>> expected = new LinkedHashMap<>(EXPECTED_TENSORS);
    expected.remove("lm_head.weight");
    try (SafetensorsFile file = SafetensorsFile.open(dir.resolve("model.safetensors"))) {
      assertThat(file.names()).containsExactlyInAnyOrderElementsOf(expected.keySet());
      assertThat(file.tensors()).allSatisfy(info -> assertThat(info.dtype()).isEqualTo(DType.BF16));
    }
    JsonNode config = new ObjectMapper().readTree(dir.resolve("config.json").toFile());
    assertThat(config.get("tie_word_embeddings").asBoolean()).isTrue();
    assertThat(config.get("torch_dtype").asText()).isEqualTo("bfloat16");
  }

  @Test
  void shouldReloadSameWeightsWhenSavedAndLoaded() throws IOException {
    // BF16 checkpoints are widened in Java: a BF16 NDArray would abort the JVM (shared/DJL.md)
    LlamaConfig config = TinyModels.tiny(false);
    int[][] tokens = TinyModels.tokens(1, 5, 64, 9);
    try (LlamaModel original = LlamaModel.random(config, 3, manager)) {
      original.save(dir.resolve("f32"), DType.F32);
      original.save(dir.resolve("f16"), DType.F16);
      original.save(dir.resolve("bf16"), DType.BF16);
      try (LlamaModel f32 = LlamaModel.load(dir.resolve("f32"), manager);
          LlamaModel f16 = LlamaModel.load(dir.resolve("f16"), manager);
          LlamaModel bf16 = LlamaModel.load(dir.resolve("bf16"), manager)) {
        assertThat(f32.config()).isEqualTo(config);
        assertThat(f16.config()).isEqualTo(config.withTorchDtype("float16"));
        for (String name : original.parameters().keySet()) {
          float[] expected = original.parameters().get(name).toFloatArray();
          assertThat(f32.parameters().get(name).toFloatArray()).as(name).containsExactly(expected);
          float[] half = f16.parameters().get(name).toFloatArray();
          float[] brain = bf16.parameters().get(name).toFloatArray();
          for (int i = 0; i < expected.length; i++) {
            assertThat(half[i]).isEqualTo(Float.float16ToFloat(Float.floatToFloat16(expected[i])));
            assertThat(brain[i])
                .isEqualTo(TensorCodec.bf16ToFloat(TensorCodec.floatToBf16(expected[i])));
          }
        }
        try (NDArray a = original.forward(manager, tokens);
            NDArray b = f32.forward(manager, tokens)) {
          assertThat(b.toFloatArray()).containsExactly(a.toFloatArray());
        }
      }
    }
    assertThat(
            Files.list(dir.resolve("f32")).map(p -> p.getFileName().toString()).sorted().toList())
        .containsExactly("config.json", "model.safetensors");
  }

  private static TreeSet<String> fieldNames(JsonNode node) {
    List<String> names = new ArrayList<>();
    node.fieldNames().forEachRemaining(names::add);
    return new TreeSet<>(names);
  }
}
