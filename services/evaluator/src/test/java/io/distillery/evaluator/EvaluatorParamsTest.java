package io.distillery.evaluator;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.distillery.evaluator.gate.Pick;
import io.distillery.stage.StageException;
import io.distillery.stage.StageParams;
import java.util.Map;
import org.junit.jupiter.api.Test;

class EvaluatorParamsTest {

  static EvaluatorParams bind(String json) throws StageException.Fatal {
    return StageParams.bind("evaluator", json, EvaluatorParams.class);
  }

  @Test
  void shouldDefaultToSmallestPassingOnTwoHundredPrompts() throws Exception {
    EvaluatorParams p = bind("{}");
    assertThat(p.pickValue()).isEqualTo(Pick.SMALLEST_PASSING);
    assertThat(p.samples()).isEqualTo(200);
    assertThat(p.gates()).isEmpty();
    assertThat(p.dataset()).isNull();
  }

  @Test
  void shouldBindGatesAndPick() throws Exception {
    EvaluatorParams p =
        bind("{\"gates\": {\"retention\": 0.97, \"p99Ms\": 50}, \"pick\": \"best-quality\"}");
    assertThat(p.gates()).isEqualTo(Map.of("retention", 0.97, "p99Ms", 50.0));
    assertThat(p.pickValue()).isEqualTo(Pick.BEST_QUALITY);
  }

  @Test
  void shouldFailFatallyNamingTheBadParam() {
    assertThatThrownBy(() -> bind("{\"gates\": {\"accuracy\": 0.9}}"))
        .isInstanceOf(StageException.Fatal.class)
        .hasMessageContaining("gates")
        .hasMessageContaining("accuracy")
        .hasMessageContaining("retention (>=)");
    assertThatThrownBy(() -> bind("{\"pick\": \"cheapest\"}"))
        .isInstanceOf(StageException.Fatal.class)
        .hasMessageContaining("pick")
        .hasMessageContaining("cheapest")
        .hasMessageContaining("smallest-passing");
    assertThatThrownBy(() -> bind("{\"samples\": 0}"))
        .isInstanceOf(StageException.Fatal.class)
        .hasMessageContaining("samples");
    assertThatThrownBy(() -> bind("{\"gate\": {}}"))
        .isInstanceOf(StageException.Fatal.class)
        .hasMessageContaining("gate");
  }

  @Test
  void shouldBindStreamedAsBooleanOrAutoAndDefaultToAuto() throws Exception {
    assertThat(bind("{}").streamed()).isEqualTo("auto");
    assertThat(bind("{\"streamed\": true}").streamed()).isEqualTo("true");
    assertThat(bind("{\"streamed\": false}").streamed()).isEqualTo("false");
    assertThat(bind("{\"streamed\": \"auto\"}").streamed()).isEqualTo("auto");
    assertThatThrownBy(() -> bind("{\"streamed\": \"sometimes\"}"))
        .isInstanceOf(StageException.Fatal.class)
        .hasMessageContaining("streamed")
        .hasMessageContaining("true, false or auto");
  }
}
