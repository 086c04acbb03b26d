package io.distillery.quantizer;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.distillery.stage.StageException;
import io.distillery.stage.StageParams;
import io.distillery.stage.StageRegistry;
import java.util.List;
import org.junit.jupiter.api.Test;

class QuantizerParamsTest {

  @Test
  void shouldApplyDefaultsWhenOnlySchemeIsGiven() throws Exception {
    QuantizerParams p =
        StageParams.bind("quantizer", "{\"scheme\":\"w4-gptq\"}", QuantizerParams.class);
    assertThat(p.groupSize()).isEqualTo(128);
    assertThat(p.alpha()).isEqualTo(0.5);
    assertThat(p.damp()).isEqualTo(0.01);
    assertThat(p.actOrder()).isFalse();
    assertThat(p.awqGrid()).isEqualTo(20);
    assertThat(p.exclude()).containsExactly("lm_head");
    assertThat(p.excludes("lm_head")).isTrue();
    assertThat(p.excludes("model.layers.0.mlp.down_proj")).isFalse();
    assertThat(p.schemeValue()).isEqualTo(Scheme.W4_GPTQ);
    assertThat(p.bits()).isEqualTo(4);
    assertThat(new QuantizerParams("w8-rtn", null, null, null, null, null, null).bits())
        .isEqualTo(8);
  }

  @Test
  void shouldTakeTwoThreeFourOrEightBitsForTheGroupSchemesOnly() throws Exception {
    assertThat(
            StageParams.bind(
                    "quantizer", "{\"scheme\":\"w4-gptq\",\"bits\":3}", QuantizerParams.class)
                .bits())
        .isEqualTo(3);
    for (int bits : new int[] {2, 3, 4, 8}) {
      assertThat(
              new QuantizerParams(
                      "w4-awq", 64, null, null, null, null, null, null, bits, null, null, null)
                  .bits())
          .isEqualTo(bits);
    }
    assertThatThrownBy(
            () ->
                StageParams.bind(
                    "quantizer", "{\"scheme\":\"w4-rtn\",\"bits\":5}", QuantizerParams.class))
        .isInstanceOf(StageException.Fatal.class)
        .hasMessageContaining("bits")
        .hasMessageContaining("2, 3, 4 or 8");
    assertThatThrownBy(
            () ->
                new QuantizerParams(
                    "w8-rtn", null, null, null, null, null, null, null, 4, null, null, null))
        .hasMessageContaining("bits: w8-rtn is 8-bit only");
  }

  @Test
  void shouldFailFatallyNamingTheParamWhenSchemeIsUnknownOrAlphaOutOfRange() {
    assertThatThrownBy(
            () -> StageParams.bind("quantizer", "{\"scheme\":\"w2-magic\"}", QuantizerParams.class))
        .isInstanceOf(StageException.Fatal.class)
        .hasMessageContaining("scheme")
        .hasMessageContaining("w2-magic");
    assertThatThrownBy(
            () ->
                StageParams.bind(
                    "quantizer",
                    "{\"scheme\":\"w8a8-smoothquant\",\"alpha\":1.5}",
                    QuantizerParams.class))
        .isInstanceOf(StageException.Fatal.class)
        .hasMessageContaining("alpha");
    assertThatThrownBy(() -> new QuantizerParams("w4-rtn", 0, null, null, null, null, List.of()))
        .hasMessageContaining("groupSize");
  }

  @Test
  void shouldBeDiscoveredByNameWhenWorkerLoadsStages() {
    assertThat(StageRegistry.discover().get("quantizer").params()).isEqualTo(QuantizerParams.class);
    assertThat(StageRegistry.discover().get("quantizer").provider().type())
        .isEqualTo(QuantizerStage.class);
  }
}
