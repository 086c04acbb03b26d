package io.distillery.model.stream;

import static org.assertj.core.api.Assertions.assertThat;

import io.distillery.model.config.LlamaConfig;
import org.junit.jupiter.api.Test;

class MemoryPlanTest {

  /** Llama-3.2-1B's shape: hidden 2048, MLP 8192, 32/8 heads of 64. */
  static final LlamaConfig ONE_B =
      LlamaConfig.builder()
          .vocabSize(128256)
          .hiddenSize(2048)
          .intermediateSize(8192)
          .numHiddenLayers(16)
          .numAttentionHeads(32)
          .numKeyValueHeads(8)
          .maxPositionEmbeddings(131072)
          .tieWordEmbeddings(true)
          .build();

  @Test
  void shouldAddUpOneLayerHiddenStatesAndTheLargerOfForwardAndGptqForThe1bShape() {
    // 32 x 512 calibration tokens in batches of 8 rows (4096 tokens)
    MemoryPlan plan = MemoryPlan.estimate(ONE_B, 32 * 512, 4096, 8, 512, true);
    long layerParams =
        2048L * 2048 * 2 + 2048L * 512 * 2 + 2048L * 8192 * 3 + 2 * 2048; // q,o + k,v + MLP + norms
    assertThat(plan.pieces())
        .containsEntry("layer", 3 * 4 * layerParams)
        .containsEntry("hidden_states", 2L * 16384 * 2048 * 4)
        .containsEntry(
            "forward_workspace",
            4L * 4096 * 8192 * 4 + 3L * 8 * 32 * 512 * 512 * 4 + 8L * 4096 * 2048 * 4)
        .containsEntry("hessians", (3L * 2048 * 2048 + 8192L * 8192) * 8)
        .containsEntry("gptq_solve", 4L * 8192 * 8192 * 4);
    // runtime 0.47 + layer 0.73 + hidden 0.27 + max(forward 1.61 + Hessians 0.64, GPTQ solve 1.07)
    // = 3.72 GB: the float32 solve is no longer the peak at this width
    assertThat(plan.peakBytes())
        .isEqualTo(471_859_200L + 729_858_048L + 268_435_456L + 1_610_612_736L + 637_534_208L);
    assertThat(plan.refusal(4_000_000_000L)).isNull();
    assertThat(plan.refusal(3_500_000_000L))
        .startsWith(
            "needs 3.7 GB, this worker has 3.5 GB: raise"
                + " DISTILLERY_WORKER_MEMORY or lower samples/seqLen");
  }

  @Test
  void shouldNeedOnlyTheRuntimeAndOneLayerWhenNothingIsObserved() {
    MemoryPlan plan = MemoryPlan.estimate(ONE_B, 0, 0, 0, 0, false);
    assertThat(plan.pieces()).containsOnlyKeys("runtime", "layer");
    assertThat(plan.peakBytes()).isEqualTo(MemoryPlan.RUNTIME_BYTES + plan.pieces().get("layer"));
    assertThat(MemoryPlan.gigabytes(plan.peakBytes())).isEqualTo("1.2 GB");
  }
}
