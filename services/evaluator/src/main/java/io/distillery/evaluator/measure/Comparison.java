package io.distillery.evaluator.measure;

import io.distillery.evaluator.gate.GateKey;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * A candidate's measurements turned into gate values, relative to the reference (and to the
 * deployed baseline for misfires).
 *
 * <p>Retention is {@code candidate exactMatch / reference exactMatch}. When the reference answers
 * nothing exactly (exactMatch 0, e.g. an untrained or very small reference) that ratio is
 * undefined, and retention falls back to {@code reference perplexity / candidate perplexity} (1
 * when the candidate is as confident in the answers as the reference, smaller when worse). {@link
 * #retentionBasis} names which one was used; the report shows it.
 */
public final class Comparison {

  public static final String BASIS_EXACT_MATCH = "exactMatch";
  public static final String BASIS_PERPLEXITY = "perplexity";

  private Comparison() {}

  public static String retentionBasis(CandidateMetrics reference) {
    return reference.exactMatch() > 0 ? BASIS_EXACT_MATCH : BASIS_PERPLEXITY;
  }

  /**
   * Every gate value of {@code candidate} by {@link GateKey#id()}, plus {@code perplexity}.
   *
   * @param baselineMisfireExactMatch the deployed student's exact match on the held-out misfires;
   *     NaN without one
   */
  public static Map<String, Double> values(
      CandidateMetrics candidate, CandidateMetrics reference, double baselineMisfireExactMatch) {
    Map<String, Double> v = new LinkedHashMap<>();
    v.put(
        GateKey.RETENTION.id(),
        retentionBasis(reference).equals(BASIS_EXACT_MATCH)
            ? candidate.exactMatch() / reference.exactMatch()
            : reference.perplexity() / candidate.perplexity());
    v.put(GateKey.EXACT_MATCH.id(), candidate.exactMatch());
    v.put(GateKey.AGREEMENT.id(), candidate.agreement());
    v.put(GateKey.KL_DIVERGENCE.id(), candidate.klDivergence());
    v.put(GateKey.PERPLEXITY_RATIO.id(), candidate.perplexity() / reference.perplexity());
    v.put(GateKey.P99_MS.id(), candidate.latency().decodeP99Ms());
    v.put(GateKey.PREFILL_P99_MS.id(), candidate.latency().prefillP99Ms());
    v.put(GateKey.TOKENS_PER_SECOND.id(), candidate.latency().decodeTokensPerSecond());
    v.put(GateKey.WEIGHT_BYTES.id(), (double) candidate.weightBytes());
    v.put(
        GateKey.WEIGHT_BYTES_RATIO.id(),
        reference.weightBytes() == 0
            ? Double.NaN
            : (double) candidate.weightBytes() / reference.weightBytes());
    v.put(GateKey.MISFIRE_EXACT_MATCH.id(), candidate.misfireExactMatch());
    v.put(
        GateKey.MISFIRE_IMPROVEMENT.id(),
        candidate.misfireExactMatch() - baselineMisfireExactMatch);
    v.put("perplexity", candidate.perplexity());
    return v;
  }
}
