package io.distillery.evaluator.gate;

import java.util.Arrays;
import java.util.List;

/**
 * Every gate the evaluator knows: the metric it reads and which way is good. A {@link
 * Direction#MIN} gate passes when the candidate's value is at least the threshold ({@code
 * retention: 0.97} means retention >= 0.97), a {@link Direction#MAX} gate when it is at most the
 * threshold ({@code p99Ms: 50} means decode p99 <= 50 ms).
 */
public enum GateKey {
  RETENTION(
      "retention",
      Direction.MIN,
      "candidate exactMatch / reference exactMatch (perplexity fallback)"),
  EXACT_MATCH("exactMatch", Direction.MIN, "fraction of eval prompts answered exactly"),
  AGREEMENT(
      "agreement",
      Direction.MIN,
      "top-1 next-token agreement with the reference on answer positions"),
  KL_DIVERGENCE(
      "klDivergence", Direction.MAX, "mean KL(reference || candidate) over answer positions, nats"),
  PERPLEXITY_RATIO("perplexityRatio", Direction.MAX, "candidate perplexity / reference perplexity"),
  P99_MS(
      "p99Ms",
      Direction.MAX,
      "decode latency per token, 99th percentile, ms (batch 1, this machine)"),
  PREFILL_P99_MS("prefillP99Ms", Direction.MAX, "prefill latency per prompt, 99th percentile, ms"),
  TOKENS_PER_SECOND("tokensPerSecond", Direction.MIN, "decode tokens per second (batch 1)"),
  WEIGHT_BYTES("weightBytes", Direction.MAX, "bytes of the weight files on disk"),
  WEIGHT_BYTES_RATIO(
      "weightBytesRatio", Direction.MAX, "candidate weightBytes / reference weightBytes"),
  MISFIRE_EXACT_MATCH("misfireExactMatch", Direction.MIN, "exact match on the held-out misfires"),
  MISFIRE_IMPROVEMENT(
      "misfireImprovement",
      Direction.MIN,
      "misfireExactMatch of the candidate minus that of the deployed baseline");

  /** Which side of the threshold passes. */
  public enum Direction {
    /** value >= threshold */
    MIN(">="),
    /** value <= threshold */
    MAX("<=");

    private final String symbol;

    Direction(String symbol) {
      this.symbol = symbol;
    }

    public String symbol() {
      return symbol;
    }

    public boolean passes(double value, double threshold) {
      return this == MIN ? value >= threshold : value <= threshold;
    }
  }

  private final String id;
  private final Direction direction;
  private final String description;

  GateKey(String id, Direction direction, String description) {
    this.id = id;
    this.direction = direction;
    this.description = description;
  }

  public String id() {
    return id;
  }

  public Direction direction() {
    return direction;
  }

  public String description() {
    return description;
  }

  /** The gate named {@code id} (exact spelling). */
  public static GateKey of(String id) {
    for (GateKey key : values()) {
      if (key.id.equals(id)) {
        return key;
      }
    }
    throw new IllegalArgumentException("unknown gate '" + id + "'; known gates: " + ids());
  }

  /** The known gates as {@code id (>=|<=)}. */
  public static List<String> ids() {
    return Arrays.stream(values()).map(k -> k.id + " (" + k.direction.symbol + ")").toList();
  }
}
