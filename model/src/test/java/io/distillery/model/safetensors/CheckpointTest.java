package io.distillery.model.safetensors;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.distillery.model.CorruptCheckpointException;
import io.distillery.model.UnsafeCheckpointException;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class CheckpointTest {

  @TempDir Path root;

  @Test
  void shouldLookUpTensorsAcrossShardsWhenIndexListsThem() throws IOException {
    Path model = Files.createDirectories(root.resolve("model"));
    writeShard(model.resolve("model-00001-of-00002.safetensors"), "model.embed_tokens.weight", 1f);
    writeShard(model.resolve("model-00002-of-00002.safetensors"), "lm_head.weight", 2f);
    writeIndex(
        model,
        """
                {"metadata": {"total_size": 32},
                 "weight_map": {"model.embed_tokens.weight": "model-00001-of-00002.safetensors",
                                "lm_head.weight": "model-00002-of-00002.safetensors"}}""");

    try (Checkpoint checkpoint = Checkpoint.open(model)) {
      assertThat(checkpoint.tensorNames())
          .containsExactly("lm_head.weight", "model.embed_tokens.weight");
      assertThat(checkpoint.floats("model.embed_tokens.weight")).containsExactly(1f, 1f, 1f, 1f);
      assertThat(checkpoint.floats("lm_head.weight")).containsExactly(2f, 2f, 2f, 2f);
      assertThat(checkpoint.info("lm_head.weight").shape()).containsExactly(2, 2);
      assertThat(checkpoint.metadata()).containsEntry("total_size", "32");
      assertThat(checkpoint.files()).hasSize(2);
    }
  }

  @Test
  void shouldOpenSingleFileWhenNoIndexExists() throws IOException {
    Path model = Files.createDirectories(root.resolve("single"));
    writeShard(model.resolve(Checkpoint.SINGLE_FILE), "w", 3f);
    try (Checkpoint fromDirectory = Checkpoint.open(model);
        Checkpoint fromFile = Checkpoint.open(model.resolve(Checkpoint.SINGLE_FILE))) {
      assertThat(fromDirectory.tensorNames()).containsExactly("w");
      assertThat(fromFile.floats("w")).containsExactly(3f, 3f, 3f, 3f);
      assertThat(fromDirectory.metadata()).containsEntry("format", "pt");
    }
  }

  @Test
  void shouldRefusePickleWhenDirectoryHasOnlyPytorchBin() throws IOException {
    Path model = Files.createDirectories(root.resolve("pickled"));
    Files.write(model.resolve("pytorch_model.bin"), new byte[] {(byte) 0x80, 2, 'c', 'o', 's'});
    assertThatThrownBy(() -> Checkpoint.open(model))
        .isInstanceOf(UnsafeCheckpointException.class)
        .hasMessageContaining("pytorch_model.bin")
        .hasMessageContaining("can execute arbitrary code")
        .hasMessageContaining("never loaded")
        .hasMessageContaining("convert the model to safetensors");
  }

  @Test
  void shouldRefusePickleWhenPointedAtPickledFile() throws IOException {
    for (String name :
        new String[] {"model.pt", "weights.pth", "last.ckpt", "state.pkl", "PYTORCH_MODEL.BIN"}) {
      Path file = Files.write(root.resolve(name), new byte[] {1});
      assertThatThrownBy(() -> Checkpoint.open(file))
          .as(name)
          .isInstanceOf(UnsafeCheckpointException.class)
          .hasMessageContaining(name);
    }
  }

  @Test
  void shouldRefusePickleWhenIndexMapsToBinShard() throws IOException {
    Path model = Files.createDirectories(root.resolve("pickled-shards"));
    Files.write(model.resolve("pytorch_model-00001-of-00001.bin"), new byte[] {1});
    writeIndex(
        model,
        """
                {"weight_map": {"w": "pytorch_model-00001-of-00001.bin"}}""");
    assertThatThrownBy(() -> Checkpoint.open(model))
        .isInstanceOf(UnsafeCheckpointException.class)
        .hasMessageContaining("pickle");
  }

  @Test
  void shouldUseSafetensorsWhenPickleSitsBesideIt() throws IOException {
    Path model = Files.createDirectories(root.resolve("both"));
    writeShard(model.resolve(Checkpoint.SINGLE_FILE), "w", 5f);
    Files.write(model.resolve("pytorch_model.bin"), new byte[] {(byte) 0x80});
    try (Checkpoint checkpoint = Checkpoint.open(model)) {
      assertThat(checkpoint.files()).containsExactly(model.resolve(Checkpoint.SINGLE_FILE));
    }
  }

  @Test
  void shouldRefuseIndexWhenShardPathEscapesDirectory() throws IOException {
    Path model = Files.createDirectories(root.resolve("escape"));
    Files.createDirectories(model.resolve("sub"));
    Path outside = root.resolve("outside.safetensors");
    writeShard(outside, "w", 1f);
    for (String shard :
        new String[] {
          "../outside.safetensors",
          outside.toString(),
          "sub/../../outside.safetensors",
          "./../escape/../outside.safetensors"
        }) {
      writeIndex(model, "{\"weight_map\": {\"w\": \"" + shard + "\"}}");
      assertThatThrownBy(() -> Checkpoint.open(model))
          .as(shard)
          .isInstanceOf(UnsafeCheckpointException.class)
          .hasMessageContaining("escapes the model directory")
          .hasMessageContaining(Checkpoint.INDEX_FILE);
    }
  }

  @Test
  void shouldAllowShardInSubdirectoryWhenItStaysInside() throws IOException {
    Path model = Files.createDirectories(root.resolve("nested"));
    writeShard(
        Files.createDirectories(model.resolve("weights")).resolve("part.safetensors"), "w", 4f);
    writeIndex(model, "{\"weight_map\": {\"w\": \"weights/./part.safetensors\"}}");
    try (Checkpoint checkpoint = Checkpoint.open(model)) {
      assertThat(checkpoint.floats("w")).containsExactly(4f, 4f, 4f, 4f);
    }
  }

  @Test
  void shouldRefuseIndexWhenShardOrTensorIsMissing() throws IOException {
    Path model = Files.createDirectories(root.resolve("missing"));
    writeShard(model.resolve("a.safetensors"), "w", 1f);
    writeIndex(model, "{\"weight_map\": {\"w\": \"b.safetensors\"}}");
    assertThatThrownBy(() -> Checkpoint.open(model))
        .isInstanceOf(CorruptCheckpointException.class)
        .hasMessageContaining("b.safetensors")
        .hasMessageContaining("does not exist");
    writeIndex(model, "{\"weight_map\": {\"v\": \"a.safetensors\"}}");
    assertThatThrownBy(() -> Checkpoint.open(model))
        .isInstanceOf(CorruptCheckpointException.class)
        .hasMessageContaining("'v'")
        .hasMessageContaining("does not contain it");
    writeIndex(model, "{\"weights\": {}}");
    assertThatThrownBy(() -> Checkpoint.open(model))
        .isInstanceOf(CorruptCheckpointException.class)
        .hasMessageContaining("weight_map");
  }

  @Test
  void shouldNameTheShardAndATensorInItWhenAnIndexedShardIsMissing() throws IOException {
    Path model = Files.createDirectories(root.resolve("lost-shard"));
    writeShard(model.resolve("model-00001-of-00002.safetensors"), "model.embed_tokens.weight", 1f);
    writeIndex(
        model,
        """
                {"weight_map": {"model.embed_tokens.weight": "model-00001-of-00002.safetensors",
                                "model.layers.0.mlp.up_proj.weight": "model-00002-of-00002.safetensors"}}""");
    assertThatThrownBy(() -> Checkpoint.open(model))
        .isInstanceOf(CorruptCheckpointException.class)
        .hasMessageContaining(
            "shard model-00002-of-00002.safetensors listed for"
                + " 'model.layers.0.mlp.up_proj.weight' does not exist");
  }

  @Test
  void shouldNameTheFileAndBothSizesWhenAShardIsTruncated() throws IOException {
    Path model = Files.createDirectories(root.resolve("truncated"));
    Path shard = model.resolve("model-00002-of-00002.safetensors");
    writeShard(model.resolve("model-00001-of-00002.safetensors"), "model.embed_tokens.weight", 1f);
    writeShard(shard, "lm_head.weight", 2f);
    writeIndex(
        model,
        """
                {"weight_map": {"model.embed_tokens.weight": "model-00001-of-00002.safetensors",
                                "lm_head.weight": "model-00002-of-00002.safetensors"}}""");
    long size = Files.size(shard);
    try (java.nio.channels.FileChannel channel =
        java.nio.channels.FileChannel.open(shard, java.nio.file.StandardOpenOption.WRITE)) {
      channel.truncate(size - 5); // a copy cut short: the last 5 of the tensor's 16 bytes are gone
    }
    assertThatThrownBy(() -> Checkpoint.open(model))
        .isInstanceOf(CorruptCheckpointException.class)
        .hasMessageContaining(shard.toString())
        .hasMessageContaining("file is truncated")
        .hasMessageContaining("should be " + size + " bytes but it is " + (size - 5) + " bytes");
  }

  @Test
  void shouldRefuseLookupWhenTensorIsAbsent() throws IOException {
    Path model = Files.createDirectories(root.resolve("absent"));
    writeShard(model.resolve(Checkpoint.SINGLE_FILE), "w", 1f);
    try (Checkpoint checkpoint = Checkpoint.open(model)) {
      assertThat(checkpoint.contains("lm_head.weight")).isFalse();
      assertThatThrownBy(() -> checkpoint.floats("lm_head.weight"))
          .isInstanceOf(CorruptCheckpointException.class)
          .hasMessageContaining("lm_head.weight")
          .hasMessageContaining(model.toString());
    }
  }

  @Test
  void shouldRefuseDirectoryWhenItHasNoWeights() throws IOException {
    Path model = Files.createDirectories(root.resolve("empty"));
    Files.writeString(model.resolve("config.json"), "{}");
    assertThatThrownBy(() -> Checkpoint.open(model))
        .isInstanceOf(CorruptCheckpointException.class)
        .hasMessageContaining("no model.safetensors");
  }

  private static void writeShard(Path file, String tensor, float value) throws IOException {
    SafetensorsWriter.write(
        file,
        Map.of(
            tensor,
            TensorData.ofFloats(new long[] {2, 2}, new float[] {value, value, value, value})),
        Map.of("format", "pt"));
  }

  private static void writeIndex(Path model, String json) throws IOException {
    Files.writeString(model.resolve(Checkpoint.INDEX_FILE), json);
  }
}
