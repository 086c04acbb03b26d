package io.distillery.stage;

import java.util.Map;

/**
 * Where a stage reports how far it got. Cheap to call often: the host throttles what goes to Kafka.
 */
@FunctionalInterface
public interface ProgressSink {
  void progress(double percent, String message, Map<String, Double> metrics);
}
