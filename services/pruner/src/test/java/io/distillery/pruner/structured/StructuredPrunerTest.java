package io.distillery.pruner.structured;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.within;

import io.distillery.model.calib.CalibrationStats;
import io.distillery.model.config.LlamaConfig;
import io.distillery.model.config.Projection;
import io.distillery.model.llama.LlamaModel;
import io.distillery.model.llama.WeightSlices;
import io.distillery.pruner.TinyLlama;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class StructuredPrunerTest {

  @TempDir Path tmp;

  /**
   * Units that write nothing into the residual stream can be removed without changing the output:
   * zero layer 1's o_proj and down_proj (the layer becomes the identity), kv group 0's o_proj
   * columns in layers 0 and 2, and the down_proj columns of the odd MLP channels. Pruning half the
   * heads, half the channels and one layer must then find exactly those units and give the same
   * logits from a model with the reduced config.
   */
  @Test
  void shouldRemoveSilentUnitsAndKeepLogitsWhenHeadsChannelsAndLayerAreDropped() throws Exception {
    LlamaConfig config = TinyLlama.config(3);
    int[][] tokens = TinyLlama.tokens(2, 12, 7);
    float[] expected;
    LlamaConfig pruned;
    float[] q2Before;
    try (LlamaModel model = LlamaModel.random(config, 42)) {
      silence(model, config);
      expected = TinyLlama.logits(model, tokens);
      q2Before = model.linearWeight(Projection.Q.module(2));
      CalibrationStats stats = TinyLlama.calibrate(model, 2);
      int[] seen = new int[1];
      pruned =
          StructuredPruner.prune(
              model, stats, 0.5, 0.5, 1, tmp.resolve("out"), (done, total) -> seen[0] = done);
      assertThat(seen[0]).isEqualTo(2);
    }
    assertThat(pruned.numHiddenLayers()).isEqualTo(2);
    assertThat(pruned.numAttentionHeads()).isEqualTo(2);
    assertThat(pruned.numKeyValueHeads()).isEqualTo(1);
    assertThat(pruned.intermediateSize()).isEqualTo(24);
    try (LlamaModel small = LlamaModel.load(tmp.resolve("out"))) {
      assertThat(small.config()).isEqualTo(pruned);
      float[] actual = TinyLlama.logits(small, tokens);
      assertThat(actual).hasSameSizeAs(expected);
      for (int i = 0; i < actual.length; i++) {
        assertThat(actual[i]).as("logit %d", i).isCloseTo(expected[i], within(1e-4f));
      }
      // new layer 1 is old layer 2, with kv group 1 (query heads 2 and 3, rows 16..31) kept
      float[] q = small.linearWeight(Projection.Q.module(1));
      assertThat(q).hasSize(16 * 32);
      for (int i = 0; i < q.length; i++) {
        assertThat(q[i]).isEqualTo(q2Before[16 * 32 + i]);
      }
    }
  }

  @Test
  void shouldShrinkOnlyTheMlpWhenOnlyMlpFractionGiven() throws Exception {
    LlamaConfig config = TinyLlama.config(2);
    try (LlamaModel model = LlamaModel.random(config, 3)) {
      CalibrationStats stats = TinyLlama.calibrate(model, 1);
      LlamaConfig pruned =
          StructuredPruner.prune(model, stats, 0, 0.25, 0, tmp.resolve("mlp"), null);
      assertThat(pruned.intermediateSize()).isEqualTo(36);
      assertThat(pruned.numAttentionHeads()).isEqualTo(4);
      assertThat(pruned.numKeyValueHeads()).isEqualTo(2);
      assertThat(pruned.numHiddenLayers()).isEqualTo(2);
    }
    try (LlamaModel small = LlamaModel.load(tmp.resolve("mlp"))) {
      float[] logits = TinyLlama.logits(small, TinyLlama.tokens(1, 5, 1));
      assertThat(logits).hasSize(5 * 64);
      for (float v : logits) {
        assertThat(Float.isFinite(v)).isTrue();
      }
    }
  }

  @Test
  void shouldKeepHighestEnergyUnitsWhenRanking() {
    assertThat(StructuredPruner.highest(new double[] {3, 1, 4, 1, 5}, 3)).containsExactly(0, 2, 4);
    assertThat(WeightSlices.expand(new int[] {1, 3}, 2)).containsExactly(2, 3, 6, 7);
    float[] w = {1, 2, 3, 4, 5, 6}; // 2 x 3
    assertThat(WeightSlices.rows(w, 3, new int[] {1})).containsExactly(4, 5, 6);
    assertThat(WeightSlices.columns(w, 2, 3, new int[] {0, 2})).containsExactly(1, 3, 4, 6);
  }

  private static void silence(LlamaModel model, LlamaConfig config) {
    int hidden = config.hiddenSize();
    int attn = config.attentionWidth();
    int inter = config.intermediateSize();
    for (int layer = 0; layer < 3; layer++) {
      float[] o = model.linearWeight(Projection.O.module(layer));
      float[] down = model.linearWeight(Projection.DOWN.module(layer));
      for (int r = 0; r < hidden; r++) {
        for (int c = 0; c < attn; c++) {
          if (layer == 1 || c < 16) { // kv group 0 = query heads 0, 1 = o_proj input channels 0..15
            o[r * attn + c] = 0;
          }
        }
        for (int c = 0; c < inter; c++) {
          if (layer == 1 || c % 2 == 1) {
            down[r * inter + c] = 0;
          }
        }
      }
      model.replaceLinearWeight(Projection.O.module(layer), o);
      model.replaceLinearWeight(Projection.DOWN.module(layer), down);
    }
  }
}
