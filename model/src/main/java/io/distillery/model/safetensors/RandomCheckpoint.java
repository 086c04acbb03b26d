package io.distillery.model.safetensors;

import io.distillery.model.config.LlamaConfig;
import io.distillery.model.config.LlamaTensorNames;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.nio.file.Path;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.stream.IntStream;

/**
 * A random-weight BF16 checkpoint of a config's exact shape, written one tensor at a time (never
 * the whole model in memory), in two shards with a {@code model.safetensors.index.json} as Hugging
 * Face writes a big model: what benchmarks and tests of real sizes use instead of downloading one.
 * Linear and embedding weights are N(0, 0.02), norms are ones; each tensor's values are a function
 * of the seed and the tensor's position only.
 */
public final class RandomCheckpoint {

  private static final int CHUNK = 1 << 20;

  private RandomCheckpoint() {}

  /** Writes config.json and the weights into {@code dir}; returns the tensor data bytes. */
  public static long write(LlamaConfig config, Path dir, long seed) throws IOException {
    Map<String, long[]> shapes = LlamaTensorNames.shapes(config);
    long total = 2 * LlamaTensorNames.parameterCount(config);
    // shards of ~55% of the data: two, whatever the tensor boundaries
    try (ShardedCheckpointWriter writer =
        new ShardedCheckpointWriter(dir, total * 55 / 100, Map.of("format", "pt"))) {
      int index = 0;
      for (Map.Entry<String, long[]> e : shapes.entrySet()) {
        long[] s = e.getValue();
        long count = s.length == 1 ? s[0] : s[0] * s[1];
        boolean norm = e.getKey().endsWith("norm.weight");
        long tensorSeed = seed * 1_000_003L + index++;
        try (Arena arena = Arena.ofShared()) {
          MemorySegment bytes = arena.allocate(count * 2, 8);
          fill(bytes, count, norm, tensorSeed);
          writer.write(e.getKey(), TensorSource.lazy(DType.BF16, s, () -> bytes));
        }
      }
      writer.finish();
    }
    config.withTorchDtype("bfloat16").write(dir);
    return total;
  }

  /** BF16 values in parallel chunks, each seeded by its position. */
  private static void fill(MemorySegment bytes, long count, boolean norm, long seed) {
    int chunks = (int) ((count + CHUNK - 1) / CHUNK);
    ValueLayout.OfShort bf16 = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    IntStream.range(0, chunks)
        .parallel()
        .forEach(
            c -> {
              SplittableRandom random = new SplittableRandom(seed * 65_537L + c);
              long from = (long) c * CHUNK;
              long to = Math.min(count, from + CHUNK);
              for (long i = from; i < to; i++) {
                float v = norm ? 1f : (float) (random.nextGaussian() * 0.02);
                bytes.set(bf16, 2 * i, TensorCodec.floatToBf16(v));
              }
            });
  }
}
