package io.distillery.evaluator.gate;

/**
 * One gate checked against one candidate.
 *
 * @param gate the gate's id
 * @param threshold the configured threshold
 * @param value the candidate's value; NaN when it could not be measured
 * @param passed whether the candidate passes
 * @param reason a readable sentence, e.g. {@code "retention 0.912 < 0.970"}
 */
public record GateResult(
    String gate, double threshold, double value, boolean passed, String reason) {}
