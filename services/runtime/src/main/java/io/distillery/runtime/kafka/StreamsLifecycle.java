package io.distillery.runtime.kafka;

import java.time.Duration;
import org.apache.kafka.streams.CloseOptions;
import org.apache.kafka.streams.KafkaStreams;

/**
 * Start-up and shutdown steps every Distillery Kafka Streams application (planner, feedback) takes
 * the same way.
 */
public final class StreamsLifecycle {

  private StreamsLifecycle() {}

  /**
   * Blocks until {@code streams} is RUNNING (all tasks assigned and restored); {@code name} is for
   * the error.
   */
  public static void awaitRunning(KafkaStreams streams, Duration timeout, String name)
      throws InterruptedException {
    long deadline = System.nanoTime() + timeout.toNanos();
    while (streams.state() != KafkaStreams.State.RUNNING) {
      if (System.nanoTime() > deadline) {
        throw new IllegalStateException(
            name + " not RUNNING after " + timeout + " (state " + streams.state() + ")");
      }
      Thread.sleep(20);
    }
  }

  /**
   * Closes {@code streams} and leaves the consumer group, so a replacement instance takes over the
   * tasks at once instead of after the session timeout.
   */
  public static void closeLeavingGroup(KafkaStreams streams) {
    streams.close(
        CloseOptions.groupMembershipOperation(CloseOptions.GroupMembershipOperation.LEAVE_GROUP)
            .withTimeout(Duration.ofSeconds(30)));
  }
}
