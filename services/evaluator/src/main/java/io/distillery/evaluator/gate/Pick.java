package io.distillery.evaluator.gate;

import java.util.Arrays;
import java.util.Comparator;
import java.util.List;
import java.util.Optional;

/**
 * How the evaluator chooses among the candidates that pass every gate. Ties fall through to the
 * next criterion and finally to the candidate name, so the choice is deterministic.
 */
public enum Pick {
  /** Fewest weight bytes on disk; then highest retention. */
  SMALLEST_PASSING(
      "smallest-passing",
      Comparator.comparingDouble((Assessment a) -> orMax(a.value(GateKey.WEIGHT_BYTES.id())))
          .thenComparingDouble(a -> -orMin(a.value(GateKey.RETENTION.id())))),
  /** Lowest decode p99 per token; then fewest weight bytes. */
  FASTEST_PASSING(
      "fastest-passing",
      Comparator.comparingDouble((Assessment a) -> orMax(a.value(GateKey.P99_MS.id())))
          .thenComparingDouble(a -> orMax(a.value(GateKey.WEIGHT_BYTES.id())))),
  /** Highest retention; then lowest perplexity. */
  BEST_QUALITY(
      "best-quality",
      Comparator.comparingDouble((Assessment a) -> -orMin(a.value(GateKey.RETENTION.id())))
          .thenComparingDouble(a -> orMax(a.value("perplexity"))));

  public static final Pick DEFAULT = SMALLEST_PASSING;

  private final String id;
  private final Comparator<Assessment> order;

  Pick(String id, Comparator<Assessment> order) {
    this.id = id;
    this.order = order.thenComparing(Assessment::candidate);
  }

  public String id() {
    return id;
  }

  /** The best passing candidate, or empty when none passes. */
  public Optional<Assessment> choose(List<Assessment> assessments) {
    return assessments.stream().filter(Assessment::passed).min(order);
  }

  public static Pick of(String id) {
    for (Pick p : values()) {
      if (p.id.equals(id)) {
        return p;
      }
    }
    throw new IllegalArgumentException("unknown pick '" + id + "'; one of " + ids());
  }

  public static List<String> ids() {
    return Arrays.stream(values()).map(Pick::id).toList();
  }

  private static double orMax(double v) {
    return Double.isNaN(v) ? Double.MAX_VALUE : v;
  }

  private static double orMin(double v) {
    return Double.isNaN(v) ? -Double.MAX_VALUE : v;
  }
}
