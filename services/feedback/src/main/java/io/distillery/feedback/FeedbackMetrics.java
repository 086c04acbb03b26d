package io.distillery.feedback;

import io.micrometer.core.instrument.MeterRegistry;

/**
 * What the feedback loop counts: misfires taken or repeated, events dropped (with the reason, each
 * also sent to the DLQ where it is a misfire), and what the policy did with each tripped window.
 */
public final class FeedbackMetrics {

  private final MeterRegistry registry;

  public FeedbackMetrics(MeterRegistry registry) {
    this.registry = registry;
  }

  public MeterRegistry registry() {
    return registry;
  }

  void misfire(String outcome) {
    registry.counter("distillery_feedback_misfires", "outcome", outcome).increment();
  }

  void dropped(String reason) {
    registry.counter("distillery_feedback_dropped", "reason", reason).increment();
  }

  void trigger(String outcome) {
    registry.counter("distillery_feedback_triggers", "outcome", outcome).increment();
  }

  double count(String name, String tag, String value) {
    var c = registry.find(name).tag(tag, value).counter();
    return c == null ? 0 : c.count();
  }
}
