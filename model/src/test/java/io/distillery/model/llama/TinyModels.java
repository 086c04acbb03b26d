package io.distillery.model.llama;

import io.distillery.model.config.Architecture;
import io.distillery.model.config.LlamaConfig;
import io.distillery.model.config.LlamaTensorNames;
import io.distillery.model.safetensors.SafetensorsWriter;
import io.distillery.model.safetensors.TensorData;
import java.io.IOException;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.SplittableRandom;

/** Tiny configs and random checkpoints for forward-pass tests. */
final class TinyModels {

  private TinyModels() {}

  /** vocab 64, hidden 32, 2 layers, 4 heads over 2 key/value heads (GQA), intermediate 64. */
  static LlamaConfig.Builder tiny() {
    return LlamaConfig.builder()
        .vocabSize(64)
        .hiddenSize(32)
        .intermediateSize(64)
        .numHiddenLayers(2)
        .numAttentionHeads(4)
        .numKeyValueHeads(2)
        .maxPositionEmbeddings(128)
        .rmsNormEps(1e-5);
  }

  static LlamaConfig tiny(boolean tied) {
    return tiny().tieWordEmbeddings(tied).build();
  }

  static LlamaConfig tinyQwen2() {
    return tiny().architecture(Architecture.QWEN2).build();
  }

  /**
   * Writes config.json and model.safetensors with weights scaled so activations stay O(1) and
   * logits are peaked (embeddings N(0,1), linears N(0, 1/in), norms 1 + N(0, 0.1^2), biases N(0,
   * 0.1^2), LM head N(0, 9/hidden)).
   */
  static Path writeRandomCheckpoint(Path directory, LlamaConfig config, long seed)
      throws IOException {
    SplittableRandom random = new SplittableRandom(seed);
    Map<String, TensorData> tensors = new LinkedHashMap<>();
    for (Map.Entry<String, long[]> entry : LlamaTensorNames.shapes(config).entrySet()) {
      String name = entry.getKey();
      long[] shape = entry.getValue();
      int size = 1;
      for (long dim : shape) {
        size *= (int) dim;
      }
      float[] values = new float[size];
      for (int i = 0; i < size; i++) {
        double g = random.nextGaussian();
        if (name.endsWith("norm.weight")) {
          values[i] = (float) (1 + 0.1 * g);
        } else if (name.endsWith(".bias")) {
          values[i] = (float) (0.1 * g);
        } else if (name.equals(LlamaTensorNames.EMBED_TOKENS)) {
          values[i] = (float) g;
        } else if (name.equals(LlamaTensorNames.LM_HEAD)) {
          values[i] = (float) (3 * g / Math.sqrt(shape[1]));
        } else {
          values[i] = (float) (g / Math.sqrt(shape[1]));
        }
      }
      tensors.put(name, TensorData.ofFloats(shape, values));
    }
    SafetensorsWriter.write(
        directory.resolve("model.safetensors"), tensors, Map.of("format", "pt"));
    config.write(directory);
    return directory;
  }

  /** Deterministic token ids in [0, vocab). */
  static int[][] tokens(int batch, int seq, int vocab, long seed) {
    SplittableRandom random = new SplittableRandom(seed);
    int[][] ids = new int[batch][seq];
    for (int b = 0; b < batch; b++) {
      for (int s = 0; s < seq; s++) {
        ids[b][s] = random.nextInt(vocab);
      }
    }
    return ids;
  }

  /** max |a - b| / max |b| over all entries. */
  static double relativeMaxError(float[] actual, double[] expected) {
    double maxDiff = 0;
    double maxAbs = 0;
    for (int i = 0; i < expected.length; i++) {
      maxDiff = Math.max(maxDiff, Math.abs(actual[i] - expected[i]));
      maxAbs = Math.max(maxAbs, Math.abs(expected[i]));
    }
    return maxDiff / maxAbs;
  }
}
