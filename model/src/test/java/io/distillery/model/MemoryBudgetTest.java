package io.distillery.model;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatCode;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.distillery.model.config.LlamaConfig;
import io.distillery.stage.StageException;
import org.junit.jupiter.api.Test;

class MemoryBudgetTest {

  @Test
  void shouldFailFatalWithBothNumbersWhenTheNeedExceedsTheBudget() {
    assertThatThrownBy(
            () -> MemoryBudget.require(14_200_000_000L, 6_000_000_000L, "calibrating this model"))
        .isInstanceOf(StageException.Fatal.class)
        .hasMessage(
            "calibrating this model needs 14.2 GB, this worker has 6.0 GB: raise DISTILLERY_WORKER_MEMORY or"
                + " lower samples/seqLen");
    assertThatThrownBy(() -> MemoryBudget.require(300_000_000L, 64L << 20, "x"))
        .hasMessageStartingWith("x needs 300.0 MB, this worker has 67.1 MB");
  }

  @Test
  void shouldPassWhenTheNeedFitsExactly() {
    assertThatCode(() -> MemoryBudget.require(6_000_000_000L, 6_000_000_000L, "x"))
        .doesNotThrowAnyException();
  }

  @Test
  void shouldCountLlama32OneBillionAsItsParameterCountTimesFour() {
    LlamaConfig oneB =
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

    assertThat(MemoryBudget.denseF32Bytes(oneB))
        .isEqualTo(1_235_814_400L * 4); // SCALE.md's parameter count
  }
}
