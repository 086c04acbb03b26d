package io.distillery.evaluator.gate;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

class PickTest {

  static Assessment candidate(
      String name, double bytes, double p99, double retention, double perplexity, boolean passes) {
    List<GateResult> gates =
        passes
            ? List.of()
            : List.of(
                new GateResult(
                    "retention", 2.0, retention, false, "retention " + retention + " < 2"));
    return new Assessment(
        name,
        Map.of(
            "weightBytes", bytes, "p99Ms", p99, "retention", retention, "perplexity", perplexity),
        gates);
  }

  // big: large and fast; mid: half the size, slower, better; tiny: smallest, fastest, best, but
  // fails a gate
  static final List<Assessment> ALL =
      List.of(
          candidate("big", 100, 5, 0.95, 2.0, true),
          candidate("mid", 50, 9, 0.99, 1.8, true),
          candidate("tiny", 10, 1, 1.0, 1.5, false));

  @Test
  void shouldPickTheSmallestPassingCandidate() {
    assertThat(Pick.SMALLEST_PASSING.choose(ALL)).map(Assessment::candidate).contains("mid");
  }

  @Test
  void shouldPickTheFastestPassingCandidate() {
    assertThat(Pick.FASTEST_PASSING.choose(ALL)).map(Assessment::candidate).contains("big");
  }

  @Test
  void shouldPickTheBestQualityThenTheLowestPerplexity() {
    assertThat(Pick.BEST_QUALITY.choose(ALL)).map(Assessment::candidate).contains("mid");
    List<Assessment> tied =
        List.of(candidate("a", 10, 1, 0.99, 1.9, true), candidate("b", 20, 2, 0.99, 1.7, true));
    assertThat(Pick.BEST_QUALITY.choose(tied)).map(Assessment::candidate).contains("b");
  }

  @Test
  void shouldBreakFullTiesByName() {
    List<Assessment> same =
        List.of(candidate("z", 10, 1, 1, 1, true), candidate("a", 10, 1, 1, 1, true));
    for (Pick p : Pick.values()) {
      assertThat(p.choose(same)).map(Assessment::candidate).as(p.id()).contains("a");
    }
  }

  @Test
  void shouldChooseNothingWhenNothingPasses() {
    assertThat(Pick.SMALLEST_PASSING.choose(List.of(ALL.get(2)))).isEmpty();
  }

  @Test
  void shouldNameAnUnknownPickAndListTheKnownOnes() {
    assertThat(Pick.of("fastest-passing")).isEqualTo(Pick.FASTEST_PASSING);
    assertThatThrownBy(() -> Pick.of("cheapest"))
        .hasMessageContaining("cheapest")
        .hasMessageContaining("smallest-passing, fastest-passing, best-quality");
  }
}
