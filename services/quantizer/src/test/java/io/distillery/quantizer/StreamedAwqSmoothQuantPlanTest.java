package io.distillery.quantizer;

import static org.assertj.core.api.Assertions.assertThat;

import io.distillery.model.config.LlamaConfig;
import io.distillery.model.stream.MemoryPlan;
import org.junit.jupiter.api.Test;

/**
 * The memory plans of streamed AWQ and SmoothQuant on the Llama-3.1-8B shape
 * (/work/shared/SCALE.md) with 32 x 512 calibration tokens in batches of 8 rows, piece by piece,
 * and against the 24 GiB of the machine every developer has.
 */
class StreamedAwqSmoothQuantPlanTest {

  /** Llama-3.1-8B's shape: hidden 4096, MLP 14336, 32/8 heads of 128, untied head. */
  static final LlamaConfig EIGHT_B =
      LlamaConfig.builder()
          .vocabSize(128256)
          .hiddenSize(4096)
          .intermediateSize(14336)
          .numHiddenLayers(32)
          .numAttentionHeads(32)
          .numKeyValueHeads(8)
          .maxPositionEmbeddings(131072)
          .build();

  static final long LAYER =
      3 * 4 * (2 * 4096L * 4096 + 2 * 4096L * 1024 + 3 * 4096L * 14336 + 8192);
  static final long HIDDEN = 2L * 16384 * 4096 * 4;
  static final long FORWARD =
      4L * 4096 * 14336 * 4 + 3L * 8 * 32 * 512 * 512 * 4 + 8L * 4096 * 4096 * 4;

  /** Channel sums (4 + 8 + 8 bytes a channel) and a 2048-bin histogram per distinct input. */
  static final long CHANNELS = (3 * 4096L + 14336) * 20 + 4 * 2048 * 8;

  /** X^T X of the attention, o_proj, MLP and down_proj inputs in f64. */
  static final long GRAMS = (3 * 4096L * 4096 + 14336L * 14336) * 8;

  static final long GIB_24 = 24L << 30;

  @Test
  void shouldPlanAwqAsStatisticsWithXtxBesideTheForwardThenTheSearchesFor8bShape() {
    MemoryPlan plan = QuantizerStage.plan(EIGHT_B, Scheme.W4_AWQ, 32 * 512, 4096, 8, 512, 2048);
    // statistics: channels, grams, the widest batch input copied to Java and chunked to the engine,
    // and the f32 product of the widest, its running sum and its copy
    long statistics = CHANNELS + GRAMS + 2 * 4096L * 14336 * 4 + 3 * 14336L * 14336 * 4; // 4.98 GB
    // search: the grams handed over, then the widest X^T X on the engine and down_proj's working
    // copies (40 bytes an element of its 4096 x 14336 weight)
    long search = GRAMS + (14336L * 14336 * 8 + 40 * 4096L * 14336); // 6.04 GB
    assertThat(plan.pieces())
        .containsEntry("runtime", MemoryPlan.RUNTIME_BYTES)
        .containsEntry("layer", LAYER)
        .containsEntry("hidden_states", HIDDEN)
        .containsEntry("forward_workspace", FORWARD)
        .containsEntry("statistics", statistics)
        .containsEntry("search", search)
        .doesNotContainKeys("hessians", "gptq_solve");
    assertThat(plan.peakBytes())
        .isEqualTo(
            MemoryPlan.RUNTIME_BYTES + LAYER + HIDDEN + Math.max(FORWARD + statistics, search));
    assertThat(MemoryPlan.gigabytes(plan.peakBytes())).isEqualTo("10.9 GB");
    assertThat(plan.refusal(GIB_24)).isNull();
    assertThat(plan.refusal(8_000_000_000L))
        .startsWith("needs 10.9 GB, this worker has 8.0 GB")
        .contains("statistics 5.0 GB")
        .contains("search 6.0 GB");
  }

  @Test
  void shouldPlanSmoothQuantWithoutXtxButWithTheRerunsInt8InputsFor8bShape() {
    MemoryPlan plan =
        QuantizerStage.plan(EIGHT_B, Scheme.W8A8_SMOOTHQUANT, 32 * 512, 4096, 8, 512, 2048);
    // channels, the widest batch input copied to Java, and the re-run's simulated INT8 input of it
    // (input, quotient, rounded, clipped, product: four new arrays)
    long statistics = CHANNELS + 4096L * 14336 * 4 + 4 * 4096L * 14336 * 4;
    assertThat(plan.pieces())
        .containsEntry("statistics", statistics)
        .doesNotContainKeys("search", "hessians", "gptq_solve");
    assertThat(plan.peakBytes())
        .isEqualTo(MemoryPlan.RUNTIME_BYTES + LAYER + HIDDEN + FORWARD + statistics);
    assertThat(MemoryPlan.gigabytes(plan.peakBytes())).isEqualTo("7.1 GB");
    assertThat(plan.refusal(GIB_24)).isNull();
  }
}
