package io.distillery.stage;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import org.junit.jupiter.api.Test;

class StageParamsTest {

  record QuantParams(String scheme, int groupSize) {
    QuantParams {
      if (groupSize <= 0 || (groupSize & (groupSize - 1)) != 0) {
        throw new IllegalArgumentException("groupSize must be a power of two, got " + groupSize);
      }
    }
  }

  @Test
  void shouldBindValidParams() throws StageException.Fatal {
    assertThat(
            StageParams.bind(
                "quantizer", "{\"scheme\":\"w4-rtn\",\"groupSize\":64}", QuantParams.class))
        .isEqualTo(new QuantParams("w4-rtn", 64));
  }

  @Test
  void shouldNameTheParamWhenInvalid() {
    assertThatThrownBy(
            () ->
                StageParams.bind(
                    "quantizer", "{\"scheme\":\"x\",\"groupSize\":48}", QuantParams.class))
        .isInstanceOf(StageException.Fatal.class)
        .hasMessageContaining("groupSize must be a power of two, got 48");
    assertThatThrownBy(
            () ->
                StageParams.bind(
                    "quantizer",
                    "{\"scheme\":\"x\",\"groupSize\":64,\"bits\":3}",
                    QuantParams.class))
        .hasMessageContaining("unknown param 'bits'");
    assertThatThrownBy(
            () ->
                StageParams.bind(
                    "quantizer", "{\"scheme\":\"x\",\"groupSize\":\"big\"}", QuantParams.class))
        .hasMessageContaining("param 'groupSize'");
    assertThatThrownBy(() -> StageParams.bind("quantizer", "[1]", QuantParams.class))
        .isInstanceOf(StageException.Fatal.class);
  }
}
