package io.distillery.evaluator.gate;

import java.util.List;
import java.util.Map;

/**
 * One candidate judged: its gate values (keyed by {@link GateKey#id()}, plus {@code perplexity})
 * and the result of every gate.
 */
public record Assessment(String candidate, Map<String, Double> values, List<GateResult> gates) {

  public Assessment {
    values = Map.copyOf(values);
    gates = List.copyOf(gates);
  }

  public boolean passed() {
    return gates.stream().allMatch(GateResult::passed);
  }

  public List<GateResult> failed() {
    return gates.stream().filter(g -> !g.passed()).toList();
  }

  /** A value, NaN when absent. */
  public double value(String key) {
    Double v = values.get(key);
    return v == null ? Double.NaN : v;
  }
}
