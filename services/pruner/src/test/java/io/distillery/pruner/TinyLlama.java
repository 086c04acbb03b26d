package io.distillery.pruner;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import io.distillery.model.calib.CalibrationStats;
import io.distillery.model.calib.StatsAccumulator;
import io.distillery.model.config.LlamaConfig;
import io.distillery.model.llama.LlamaModel;
import java.util.Map;
import java.util.Set;
import java.util.SplittableRandom;

/**
 * A tiny random Llama (4 heads in 2 kv groups) and calibration statistics from a few forward passes
 * over it.
 */
public final class TinyLlama {

  private TinyLlama() {}

  public static LlamaConfig config(int layers) {
    return LlamaConfig.builder()
        .vocabSize(64)
        .hiddenSize(32)
        .intermediateSize(48)
        .numHiddenLayers(layers)
        .numAttentionHeads(4)
        .numKeyValueHeads(2)
        .headDim(8)
        .maxPositionEmbeddings(64)
        .build();
  }

  public static int[][] tokens(int batch, int seq, long seed) {
    SplittableRandom random = new SplittableRandom(seed);
    int[][] ids = new int[batch][seq];
    for (int[] row : ids) {
      for (int i = 0; i < seq; i++) {
        row[i] = random.nextInt(64);
      }
    }
    return ids;
  }

  /**
   * Statistics (with X^T X for every module) from {@code passes} forward passes of 2 x 16 random
   * tokens.
   */
  public static CalibrationStats calibrate(LlamaModel model, int passes) {
    StatsAccumulator acc = new StatsAccumulator(64, 1.5f, Set.of(), true);
    try (var reg =
        model.observeLinearInputs(
            (module, input) ->
                acc.add(
                    module,
                    input.toFloatArray(),
                    Math.toIntExact(input.getShape().get(input.getShape().dimension() - 1))))) {
      for (int p = 0; p < passes; p++) {
        try (NDManager scope = model.manager().newSubManager()) {
          model.forward(scope, tokens(2, 16, 100 + p)).close();
        }
      }
    }
    return acc.result(Map.of("source", "test"));
  }

  /** Logits of {@code tokens}, flattened. */
  public static float[] logits(LlamaModel model, int[][] tokens) {
    try (NDManager scope = model.manager().newSubManager()) {
      NDArray out = model.forward(scope, tokens);
      return out.toFloatArray();
    }
  }
}
