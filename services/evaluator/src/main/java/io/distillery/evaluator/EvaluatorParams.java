package io.distillery.evaluator;

import io.distillery.evaluator.gate.GateKey;
import io.distillery.evaluator.gate.Pick;
import java.util.Map;

/**
 * Params of the evaluator stage, validated here (an IllegalArgumentException names the param and
 * fails the job as non-retryable).
 *
 * @param dataset a user eval JSONL file, a path or a file: URI ({@code {"task","prompt","answer"}}
 *     lines); default: {@code test.jsonl} next to the reference checkpoint, else a generated
 *     task-suite test split (drawn with the reference's task settings, {@code
 *     distillery-tasks.json}, if it has them)
 * @param samples at most this many eval prompts (and held-out misfires), default 200
 * @param seed seed of the generated test split when there is no dataset (default 7)
 * @param gates gate id to threshold, merged over the run's gates; see {@link GateKey}
 * @param pick one of {@link Pick#ids()}, default smallest-passing
 * @param latencyRuns timed prompts per model, batch 1, after one untimed warm-up (default 5)
 * @param decodeTokens decode steps timed per latency run (default 16)
 * @param batch sequences per teacher-forced forward pass (default 32)
 * @param streamed {@code auto} (default): load each model whole when the whole-model evaluation
 *     fits the worker's memory budget, else stream it one decoder layer at a time; {@code true}:
 *     always stream (exact match teacher-forced, perplexity, agreement, KL; no latency); {@code
 *     false}: always load whole
 */
public record EvaluatorParams(
    String dataset,
    Integer samples,
    Long seed,
    Map<String, Double> gates,
    String pick,
    Integer latencyRuns,
    Integer decodeTokens,
    Integer batch,
    String streamed) {

  public static final String AUTO = "auto";

  public EvaluatorParams {
    samples = samples == null ? 200 : samples;
    seed = seed == null ? 7L : seed;
    gates = gates == null ? Map.of() : Map.copyOf(gates);
    pick = pick == null ? Pick.DEFAULT.id() : pick;
    latencyRuns = latencyRuns == null ? 5 : latencyRuns;
    decodeTokens = decodeTokens == null ? 16 : decodeTokens;
    batch = batch == null ? 32 : batch;
    streamed = streamed == null ? AUTO : streamed;
    if (dataset != null && dataset.isBlank()) {
      throw new IllegalArgumentException("dataset: must name a JSONL file, got an empty string");
    }
    if (samples < 1) {
      throw new IllegalArgumentException("samples: must be at least 1, got " + samples);
    }
    for (Map.Entry<String, Double> e : gates.entrySet()) {
      try {
        GateKey.of(e.getKey());
      } catch (IllegalArgumentException unknown) {
        throw new IllegalArgumentException("gates: " + unknown.getMessage());
      }
      if (!Double.isFinite(e.getValue())) {
        throw new IllegalArgumentException(
            "gates: '" + e.getKey() + "' needs a finite number, got " + e.getValue());
      }
    }
    try {
      Pick.of(pick);
    } catch (IllegalArgumentException unknown) {
      throw new IllegalArgumentException("pick: " + unknown.getMessage());
    }
    if (latencyRuns < 1) {
      throw new IllegalArgumentException("latencyRuns: must be at least 1, got " + latencyRuns);
    }
    if (decodeTokens < 1) {
      throw new IllegalArgumentException("decodeTokens: must be at least 1, got " + decodeTokens);
    }
    if (batch < 1) {
      throw new IllegalArgumentException("batch: must be at least 1, got " + batch);
    }
    if (!streamed.equals(AUTO) && !streamed.equals("true") && !streamed.equals("false")) {
      throw new IllegalArgumentException(
          "streamed: must be true, false or auto, got '" + streamed + "'");
    }
  }

  /** Params with {@code streamed} left at auto. */
  public EvaluatorParams(
      String dataset,
      Integer samples,
      Long seed,
      Map<String, Double> gates,
      String pick,
      Integer latencyRuns,
      Integer decodeTokens,
      Integer batch) {
    this(dataset, samples, seed, gates, pick, latencyRuns, decodeTokens, batch, null);
  }

  public Pick pickValue() {
    return Pick.of(pick);
  }
}
