package io.distillery.serving.events;

import org.apache.avro.specific.SpecificRecord;

/**
 * Where a serving node's events go (misfires, traffic counts, DeploymentActive). {@link #offer}
 * never blocks the caller: an event that cannot be kept is dropped and {@code onDrop} runs, now or
 * later if delivery fails.
 */
@FunctionalInterface
public interface EventSink extends AutoCloseable {

  void offer(String topic, String key, SpecificRecord value, Runnable onDrop);

  @Override
  default void close() {}

  /**
   * A sink with nowhere to send (a local node without Kafka): every event is dropped and counted as
   * such.
   */
  static EventSink none() {
    return (topic, key, value, onDrop) -> onDrop.run();
  }
}
