package io.distillery.pruner;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.distillery.stage.StageException;
import io.distillery.stage.StageParams;
import java.util.List;
import org.junit.jupiter.api.Test;

class PrunerParamsTest {

  @Test
  void shouldApplyDefaultsWhenOnlyMethodAndSparsityGiven() throws Exception {
    PrunerParams p =
        StageParams.bind("pruner", "{\"method\":\"wanda\",\"sparsity\":0.5}", PrunerParams.class);
    assertThat(p.pattern()).isEqualTo("unstructured");
    assertThat(p.exclude()).containsExactly("lm_head");
    assertThat(p.damp()).isEqualTo(0.01);
    assertThat(p.blockSize()).isEqualTo(128);
    assertThat(p.excludes("lm_head")).isTrue();
    assertThat(p.excludes("model.layers.0.mlp.down_proj")).isFalse();
  }

  @Test
  void shouldFailNamingSparsityWhenOutsideOpenUnitInterval() {
    for (String s : List.of("0", "1", "1.5", "-0.1")) {
      assertThatThrownBy(
              () ->
                  StageParams.bind(
                      "pruner",
                      "{\"method\":\"magnitude\",\"sparsity\":" + s + "}",
                      PrunerParams.class))
          .isInstanceOf(StageException.Fatal.class)
          .hasMessageContaining("sparsity");
    }
    assertThatThrownBy(
            () -> new PrunerParams("magnitude", null, null, null, null, null, null, null, null))
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessageContaining("sparsity");
  }

  @Test
  void shouldFailNamingMethodWhenUnknown() {
    assertThatThrownBy(
            () ->
                StageParams.bind(
                    "pruner", "{\"method\":\"random\",\"sparsity\":0.5}", PrunerParams.class))
        .isInstanceOf(StageException.Fatal.class)
        .hasMessageContaining("method")
        .hasMessageContaining("random");
  }

  @Test
  void shouldFailNamingPatternWhenUnknown() {
    assertThatThrownBy(
            () ->
                StageParams.bind(
                    "pruner", "{\"method\":\"wanda\",\"pattern\":\"4:8\"}", PrunerParams.class))
        .isInstanceOf(StageException.Fatal.class)
        .hasMessageContaining("pattern")
        .hasMessageContaining("4:8");
  }

  @Test
  void shouldFailNamingFractionWhenStructuredFractionOutOfRange() {
    assertThatThrownBy(
            () -> new PrunerParams("structured", null, null, null, null, null, 1.0, null, null))
        .hasMessageContaining("headFraction");
    assertThatThrownBy(
            () -> new PrunerParams("structured", null, null, null, null, null, null, -0.5, null))
        .hasMessageContaining("mlpFraction");
    assertThatThrownBy(
            () -> new PrunerParams("structured", null, null, null, null, null, null, null, -1))
        .hasMessageContaining("dropLayers");
  }

  @Test
  void shouldAcceptTwoFourWithoutSparsity() {
    PrunerParams p = new PrunerParams("sparsegpt", null, "2:4", null, null, null, null, null, null);
    assertThat(p.sparsityPattern()).isEqualTo(SparsityPattern.nOfM(2, 4));
  }
}
