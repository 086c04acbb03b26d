package io.distillery.evaluator.gate;

import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * The gates of one evaluation: the run's gates (from ModelRegistered, carried on the StageJob) with
 * the stage's own {@code gates} param merged over them (the param wins on the same key). Parsed
 * once; an unknown key fails here.
 */
public final class Gates {

  private final Map<GateKey, Double> thresholds;

  private Gates(Map<GateKey, Double> thresholds) {
    this.thresholds = Collections.unmodifiableMap(thresholds);
  }

  /**
   * Merges {@code params} over {@code run}.
   *
   * @throws IllegalArgumentException naming an unknown gate (with the known ones) or a non-finite
   *     threshold
   */
  public static Gates merge(Map<String, Double> run, Map<String, Double> params) {
    Map<String, Double> merged = new LinkedHashMap<>();
    if (run != null) {
      merged.putAll(run);
    }
    if (params != null) {
      merged.putAll(params);
    }
    Map<GateKey, Double> thresholds = new LinkedHashMap<>();
    for (Map.Entry<String, Double> e : merged.entrySet()) {
      GateKey key = GateKey.of(e.getKey());
      Double threshold = e.getValue();
      if (threshold == null || !Double.isFinite(threshold)) {
        throw new IllegalArgumentException(
            "gate '" + e.getKey() + "' needs a finite number, got " + threshold);
      }
      thresholds.put(key, threshold);
    }
    return new Gates(thresholds);
  }

  public Map<GateKey, Double> thresholds() {
    return thresholds;
  }

  public boolean contains(GateKey key) {
    return thresholds.containsKey(key);
  }

  public boolean isEmpty() {
    return thresholds.isEmpty();
  }

  /**
   * Checks every gate against a candidate's values (keyed by gate id). A value that is missing or
   * NaN fails its gate, unless {@code notMeasured} explains why it could not be measured; then the
   * gate is reported and passes.
   */
  public List<GateResult> check(Map<String, Double> values, Map<String, String> notMeasured) {
    List<GateResult> results = new ArrayList<>();
    for (Map.Entry<GateKey, Double> e : thresholds.entrySet()) {
      GateKey key = e.getKey();
      double threshold = e.getValue();
      Double value = values.get(key.id());
      if (value == null || Double.isNaN(value)) {
        String why = notMeasured.get(key.id());
        results.add(
            why != null
                ? new GateResult(
                    key.id(), threshold, Double.NaN, true, key.id() + " not measured: " + why)
                : new GateResult(
                    key.id(), threshold, Double.NaN, false, key.id() + " could not be measured"));
        continue;
      }
      boolean passed = key.direction().passes(value, threshold);
      String op =
          passed ? key.direction().symbol() : key.direction() == GateKey.Direction.MIN ? "<" : ">";
      results.add(
          new GateResult(
              key.id(),
              threshold,
              value,
              passed,
              String.format(
                  Locale.ROOT, "%s %s %s %s", key.id(), format(value), op, format(threshold))));
    }
    return results;
  }

  /** A threshold or value as people write it: {@code 0.97}, {@code 50}, {@code 1.2e+07}. */
  public static String format(double v) {
    if (v != 0 && (Math.abs(v) >= 1e6 || Math.abs(v) < 1e-3)) {
      return String.format(Locale.ROOT, "%.4g", v);
    }
    return String.format(Locale.ROOT, "%.4f", v).replaceAll("0+$", "").replaceAll("\\.$", "");
  }
}
