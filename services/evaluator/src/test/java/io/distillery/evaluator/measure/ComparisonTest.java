package io.distillery.evaluator.measure;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.data.Offset.offset;

import java.util.Map;
import org.junit.jupiter.api.Test;

class ComparisonTest {

  static final Latency LATENCY = new Latency(2, 4, 1, 3, 100, 500);

  static CandidateMetrics metrics(
      String name, double exactMatch, double perplexity, long bytes, double misfires) {
    return new CandidateMetrics(
        name, exactMatch, perplexity, 0.9, 0.1, LATENCY, bytes, 1000, misfires, 10, 20);
  }

  @Test
  void shouldDivideExactMatchesWhenTheReferenceAnswersSomething() {
    CandidateMetrics reference = metrics("reference", 0.8, 2.0, 4000, Double.NaN);
    Map<String, Double> v = Comparison.values(metrics("q4", 0.6, 3.0, 1000, 0.75), reference, 0.25);
    assertThat(Comparison.retentionBasis(reference)).isEqualTo("exactMatch");
    assertThat(v.get("retention")).isCloseTo(0.75, offset(1e-12));
    assertThat(v.get("perplexityRatio")).isEqualTo(1.5);
    assertThat(v.get("weightBytesRatio")).isEqualTo(0.25);
    assertThat(v.get("weightBytes")).isEqualTo(1000.0);
    assertThat(v.get("p99Ms")).isEqualTo(3.0);
    assertThat(v.get("prefillP99Ms")).isEqualTo(4.0);
    assertThat(v.get("tokensPerSecond")).isEqualTo(500.0);
    assertThat(v.get("misfireImprovement")).isEqualTo(0.5);
  }

  @Test
  void shouldFallBackToThePerplexityRatioWhenTheReferenceAnswersNothing() {
    CandidateMetrics reference = metrics("reference", 0.0, 2.0, 4000, Double.NaN);
    Map<String, Double> v =
        Comparison.values(metrics("q4", 0.0, 4.0, 1000, Double.NaN), reference, Double.NaN);
    assertThat(Comparison.retentionBasis(reference)).isEqualTo("perplexity");
    assertThat(v.get("retention")).isEqualTo(0.5);
    assertThat(v.get("misfireImprovement")).isNaN();
  }
}
