package io.distillery.model.config;

import static org.assertj.core.api.Assertions.assertThatCode;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.distillery.model.CorruptCheckpointException;
import io.distillery.model.safetensors.Checkpoint;
import io.distillery.model.safetensors.SafetensorsWriter;
import io.distillery.model.safetensors.TensorData;
import java.io.IOException;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class LlamaTensorNamesTest {

  static final LlamaConfig CONFIG =
      LlamaConfig.builder()
          .vocabSize(16)
          .hiddenSize(8)
          .intermediateSize(12)
          .numHiddenLayers(2)
          .numAttentionHeads(2)
          .numKeyValueHeads(1)
          .maxPositionEmbeddings(32)
          .build();

  @TempDir Path dir;

  @Test
  void shouldAcceptACheckpointWithEveryTensorInItsConfigShape() throws IOException {
    write(Map.of());
    try (Checkpoint checkpoint = Checkpoint.open(dir)) {
      assertThatCode(() -> LlamaTensorNames.validate(checkpoint, CONFIG))
          .doesNotThrowAnyException();
    }
  }

  @Test
  void shouldNameTensorShapeAndConfigKeyWhenAShapeDisagreesWithConfig() throws IOException {
    write(Map.of("model.layers.0.mlp.up_proj.weight", new long[] {24, 8}));
    try (Checkpoint checkpoint = Checkpoint.open(dir)) {
      assertThatThrownBy(() -> LlamaTensorNames.validate(checkpoint, CONFIG))
          .isInstanceOf(CorruptCheckpointException.class)
          .hasMessageContaining(
              "tensor 'model.layers.0.mlp.up_proj.weight' has shape [24, 8] but config.json"
                  + " implies [12, 8] (from intermediate_size 12)");
    }
  }

  @Test
  void shouldNameTheHeadKeysWhenAnAttentionProjectionDisagrees() throws IOException {
    write(Map.of("model.layers.1.self_attn.k_proj.weight", new long[] {8, 8}));
    try (Checkpoint checkpoint = Checkpoint.open(dir)) {
      assertThatThrownBy(() -> LlamaTensorNames.validate(checkpoint, CONFIG))
          .hasMessageContaining("'model.layers.1.self_attn.k_proj.weight' has shape [8, 8]")
          .hasMessageContaining("(from num_key_value_heads 1 x head_dim 4)");
    }
  }

  @Test
  void shouldNameTheMissingTensorWhenTheCheckpointHasFewerLayersThanConfig() throws IOException {
    Map<String, long[]> drop = new LinkedHashMap<>();
    drop.put("model.layers.1.mlp.down_proj.weight", null);
    write(drop);
    try (Checkpoint checkpoint = Checkpoint.open(dir)) {
      assertThatThrownBy(() -> LlamaTensorNames.validate(checkpoint, CONFIG))
          .isInstanceOf(CorruptCheckpointException.class)
          .hasMessageContaining("checkpoint has no tensor 'model.layers.1.mlp.down_proj.weight'");
    }
  }

  /**
   * A zero checkpoint of {@link #CONFIG}'s tensors, with {@code changed} shapes (null: tensor left
   * out).
   */
  private void write(Map<String, long[]> changed) throws IOException {
    Map<String, TensorData> tensors = new LinkedHashMap<>();
    for (Map.Entry<String, long[]> e : LlamaTensorNames.shapes(CONFIG).entrySet()) {
      long[] shape = changed.containsKey(e.getKey()) ? changed.get(e.getKey()) : e.getValue();
      if (shape != null) {
        long n = 1;
        for (long d : shape) {
          n *= d;
        }
        tensors.put(e.getKey(), TensorData.ofFloats(shape, new float[Math.toIntExact(n)]));
      }
    }
    SafetensorsWriter.write(dir.resolve(Checkpoint.SINGLE_FILE), tensors, Map.of("format", "pt"));
  }
}
