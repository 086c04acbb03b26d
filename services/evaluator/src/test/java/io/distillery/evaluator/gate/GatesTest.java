package io.distillery.evaluator.gate;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

class GatesTest {

  @Test
  void shouldLetTheStageParamsWinOverTheRunsGates() {
    Gates gates = Gates.merge(Map.of("retention", 0.9, "p99Ms", 50.0), Map.of("retention", 0.97));
    assertThat(gates.thresholds())
        .containsExactlyInAnyOrderEntriesOf(Map.of(GateKey.RETENTION, 0.97, GateKey.P99_MS, 50.0));
  }

  @Test
  void shouldNameAnUnknownGateAndListTheKnownOnes() {
    assertThatThrownBy(() -> Gates.merge(Map.of("accuracy", 0.9), Map.of()))
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessageContaining("unknown gate 'accuracy'")
        .hasMessageContaining("retention (>=)")
        .hasMessageContaining("p99Ms (<=)")
        .hasMessageContaining("misfireImprovement (>=)");
  }

  @Test
  void shouldPassMinGatesAtOrAboveAndMaxGatesAtOrBelowTheThreshold() {
    Gates gates =
        Gates.merge(Map.of(), Map.of("retention", 0.97, "p99Ms", 50.0, "weightBytesRatio", 0.5));
    List<GateResult> results =
        gates.check(Map.of("retention", 0.97, "p99Ms", 50.0, "weightBytesRatio", 0.25), Map.of());
    assertThat(results).allMatch(GateResult::passed).hasSize(3);

    List<GateResult> failed =
        gates.check(Map.of("retention", 0.96, "p99Ms", 51.5, "weightBytesRatio", 0.25), Map.of());
    assertThat(failed)
        .filteredOn(g -> !g.passed())
        .extracting(GateResult::reason)
        .containsExactlyInAnyOrder("retention 0.96 < 0.97", "p99Ms 51.5 > 50");
  }

  @Test
  void shouldFailAGateWhoseValueIsMissingUnlessItIsExplainedAsNotMeasured() {
    Gates gates = Gates.merge(Map.of("misfireImprovement", 0.0, "agreement", 0.9), Map.of());
    List<GateResult> missing = gates.check(Map.of("agreement", Double.NaN), Map.of());
    assertThat(missing).noneMatch(GateResult::passed);
    assertThat(missing).extracting(GateResult::reason).contains("agreement could not be measured");

    List<GateResult> explained =
        gates.check(
            Map.of("agreement", 0.95), Map.of("misfireImprovement", "no held-out misfires"));
    assertThat(explained).allMatch(GateResult::passed);
    assertThat(explained)
        .extracting(GateResult::reason)
        .contains("misfireImprovement not measured: no held-out misfires");
  }

  @Test
  void shouldRefuseANonFiniteThreshold() {
    assertThatThrownBy(() -> Gates.merge(Map.of("retention", Double.NaN), Map.of()))
        .hasMessageContaining("retention");
  }
}
