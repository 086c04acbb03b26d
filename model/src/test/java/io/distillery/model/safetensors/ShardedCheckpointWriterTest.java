package io.distillery.model.safetensors;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import com.fasterxml.jackson.databind.JsonNode;
import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class ShardedCheckpointWriterTest {

  @TempDir Path dir;

  private static float[] ramp(int n, float step) {
    float[] v = new float[n];
    for (int i = 0; i < n; i++) {
      v[i] = (i - n / 2) * step;
    }
    return v;
  }

  @Test
  void shouldWriteOneModelSafetensorsWhenEverythingFitsOneShard() throws IOException {
    try (ShardedCheckpointWriter writer =
        new ShardedCheckpointWriter(dir, 1 << 20, Map.of("format", "pt"))) {
      writer.writeFloats("b.weight", DType.F32, new long[] {2, 3}, ramp(6, 0.5f));
      writer.writeFloats("a.weight", DType.F32, new long[] {4}, ramp(4, 1f));
      assertThat(writer.finish()).containsExactly(dir.resolve(Checkpoint.SINGLE_FILE));
    }
    try (Checkpoint checkpoint = Checkpoint.open(dir)) {
      assertThat(checkpoint.tensorNames()).containsExactly("a.weight", "b.weight");
      assertThat(checkpoint.floats("b.weight")).containsExactly(-1.5f, -1f, -0.5f, 0f, 0.5f, 1f);
      assertThat(checkpoint.floats("a.weight")).containsExactly(-2f, -1f, 0f, 1f);
      assertThat(checkpoint.info("b.weight").shape()).containsExactly(2, 3);
      assertThat(checkpoint.metadata()).containsEntry("format", "pt");
    }
    try (Stream<Path> files = Files.list(dir)) {
      assertThat(files.map(p -> p.getFileName().toString()))
          .containsExactly(Checkpoint.SINGLE_FILE);
    }
  }

  @Test
  void shouldCutShardsAndWriteIndexWhenShardSizeIsExceeded() throws IOException {
    // 40-byte shards: t0 (24 B) alone, t1 + t2 (16 + 16 B) together, t3 (48 B, larger than a shard)
    // alone
    try (ShardedCheckpointWriter writer =
        new ShardedCheckpointWriter(dir, 40, Map.of("format", "pt"))) {
      writer.writeFloats("t0", DType.F32, new long[] {6}, ramp(6, 1f));
      writer.writeFloats("t1", DType.F32, new long[] {4}, ramp(4, 2f));
      writer.writeFloats("t2", DType.F32, new long[] {2, 2}, ramp(4, 3f));
      writer.writeFloats("t3", DType.F32, new long[] {12}, ramp(12, 4f));
      List<Path> files = writer.finish();
      assertThat(files)
          .extracting(p -> p.getFileName().toString())
          .containsExactly(
              "model-00001-of-00003.safetensors",
              "model-00002-of-00003.safetensors",
              "model-00003-of-00003.safetensors",
              Checkpoint.INDEX_FILE);
    }
    JsonNode index = HeaderParser.JSON.readTree(dir.resolve(Checkpoint.INDEX_FILE).toFile());
    assertThat(index.path("metadata").path("total_size").asLong()).isEqualTo(24 + 16 + 16 + 48);
    assertThat(index.path("weight_map").path("t2").asText())
        .isEqualTo("model-00002-of-00003.safetensors");
    assertThat(index.path("weight_map").path("t3").asText())
        .isEqualTo("model-00003-of-00003.safetensors");
    try (Checkpoint checkpoint = Checkpoint.open(dir)) {
      assertThat(checkpoint.files()).hasSize(3);
      assertThat(checkpoint.floats("t0")).containsExactly(ramp(6, 1f));
      assertThat(checkpoint.floats("t1")).containsExactly(ramp(4, 2f));
      assertThat(checkpoint.floats("t2")).containsExactly(ramp(4, 3f));
      assertThat(checkpoint.floats("t3")).containsExactly(ramp(12, 4f));
    }
    try (Stream<Path> files = Files.list(dir)) {
      assertThat(files.filter(p -> p.getFileName().toString().endsWith(".partial"))).isEmpty();
    }
  }

  @Test
  void shouldNarrowToBf16RoundingToNearestEven() throws IOException {
    // 1 + 2^-8 lies halfway between the BF16 neighbours 1 and 1 + 2^-7: ties go to the even
    // mantissa (1);
    // 1 + 3 * 2^-8 lies halfway between 1 + 2^-7 and 1 + 2^-6: ties go to 1 + 2^-6; just above a
    // tie rounds up
    float[] values = {1f + 0x1p-8f, 1f + 3 * 0x1p-8f, 1f + 0x1p-8f + 0x1p-20f, -2.5f, 0f};
    try (ShardedCheckpointWriter writer = new ShardedCheckpointWriter(dir)) {
      writer.writeFloats("x", DType.BF16, new long[] {5}, values);
      writer.finish();
    }
    try (Checkpoint checkpoint = Checkpoint.open(dir)) {
      assertThat(checkpoint.info("x").dtype()).isEqualTo(DType.BF16);
      assertThat(checkpoint.floats("x")).containsExactly(1f, 1f + 0x1p-6f, 1f + 0x1p-7f, -2.5f, 0f);
    }
  }

  @Test
  void shouldRefuseDuplicateNamesAndMismatchedBytes() throws IOException {
    try (ShardedCheckpointWriter writer = new ShardedCheckpointWriter(dir)) {
      writer.writeFloats("x", DType.F32, new long[] {1}, new float[] {1});
      assertThatThrownBy(() -> writer.writeFloats("x", DType.F32, new long[] {1}, new float[] {2}))
          .isInstanceOf(IllegalArgumentException.class)
          .hasMessageContaining("already written");
      assertThatThrownBy(
              () ->
                  writer.write(
                      "y",
                      TensorSource.lazy(
                          DType.F32, new long[] {2}, () -> MemorySegment.ofArray(new byte[4]))))
          .isInstanceOf(IllegalArgumentException.class)
          .hasMessageContaining("needs 8");
    }
    try (Stream<Path> files = Files.list(dir)) {
      assertThat(files).as("an unfinished writer leaves nothing behind").isEmpty();
    }
  }

  @Test
  void shouldWriteTheSameFilesAsTheStreamingWriterWhenWritingAllAtOnce() throws IOException {
    // mapped (native) and heap sources, shards cut at 100 bytes, one tensor larger than a shard
    Path source = dir.resolve("source.safetensors");
    SafetensorsWriter.write(
        source,
        Map.of(
            "m.big", TensorData.ofFloats(DType.BF16, new long[] {70}, ramp(70, 0.25f)),
            "m.small", TensorData.ofFloats(DType.F32, new long[] {3}, ramp(3, 2f))),
        Map.of());
    for (long shardBytes : new long[] {100, 1 << 20}) {
      Path streamed = dir.resolve("streamed-" + shardBytes);
      Path all = dir.resolve("all-" + shardBytes);
      try (SafetensorsFile mapped = SafetensorsFile.open(source)) {
        Map<String, TensorSource> tensors = new java.util.LinkedHashMap<>();
        tensors.put("z.first", TensorData.ofFloats(DType.F16, new long[] {2, 5}, ramp(10, 0.5f)));
        for (TensorInfo info : mapped.tensors()) {
          tensors.put(
              "x." + info.name(),
              TensorSource.lazy(info.dtype(), info.shape(), () -> mapped.segment(info.name())));
        }
        tensors.put("a.last", TensorData.ofInts(new long[] {3}, new int[] {-1, 0, 1 << 30}));
        try (ShardedCheckpointWriter writer =
            new ShardedCheckpointWriter(streamed, shardBytes, Map.of("format", "pt"))) {
          for (Map.Entry<String, TensorSource> e : tensors.entrySet()) {
            writer.write(e.getKey(), e.getValue());
          }
          writer.finish();
        }
        List<Path> files =
            ShardedCheckpointWriter.writeAll(all, shardBytes, Map.of("format", "pt"), tensors);
        assertThat(files).allMatch(Files::isRegularFile);
      }
      List<String> names;
      try (Stream<Path> list = Files.list(streamed)) {
        names = list.map(p -> p.getFileName().toString()).sorted().toList();
      }
      try (Stream<Path> list = Files.list(all)) {
        assertThat(list.map(p -> p.getFileName().toString()).sorted())
            .as(shardBytes + "-byte shards")
            .containsExactlyElementsOf(names);
      }
      assertThat(names).hasSize(shardBytes == 100 ? 4 : 1);
      for (String name : names) {
        assertThat(Files.readAllBytes(all.resolve(name)))
            .as(name)
            .isEqualTo(Files.readAllBytes(streamed.resolve(name)));
      }
    }
  }

  @Test
  void shouldRefuseMismatchedBytesAndLeaveNoPartialFileWhenWritingAllAtOnce() throws IOException {
    Map<String, TensorSource> tensors =
        Map.of("w", new TensorData(DType.F32, new long[] {1}, MemorySegment.ofArray(new byte[4])));
    Map<String, TensorSource> wrong =
        Map.of(
            "w",
            TensorSource.lazy(DType.F32, new long[] {2}, () -> MemorySegment.ofArray(new byte[4])));
    assertThatThrownBy(
            () -> ShardedCheckpointWriter.writeAll(dir.resolve("bad"), 1 << 20, Map.of(), wrong))
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessageContaining("'w' supplied 4 bytes");
    try (Stream<Path> files = Files.list(dir.resolve("bad"))) {
      assertThat(files).isEmpty();
    }
    assertThatThrownBy(
            () ->
                ShardedCheckpointWriter.writeAll(dir.resolve("none"), 1 << 20, Map.of(), Map.of()))
        .isInstanceOf(IllegalStateException.class);
    assertThat(ShardedCheckpointWriter.writeAll(dir.resolve("ok"), 1 << 20, Map.of(), tensors))
        .containsExactly(dir.resolve("ok").resolve(Checkpoint.SINGLE_FILE));
  }
}
