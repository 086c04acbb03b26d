package io.distillery.runtime.kafka;

import io.distillery.schemas.dlq.DeadLetter;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.time.Instant;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import org.apache.kafka.clients.producer.Producer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.Serializer;

/**
 * Sends a record a consumer could not process to {@code distillery.dlq.<topic>}, with the error,
 * and waits for it.
 */
public final class DeadLetters {

  private final Producer<String, byte[]> producer;
  private final Serializer<DeadLetter> serializer;
  private final String consumer;

  public DeadLetters(
      Producer<String, byte[]> producer, Serializer<DeadLetter> serializer, String consumer) {
    this.producer = producer;
    this.serializer = serializer;
    this.consumer = consumer;
  }

  public static DeadLetter letter(
      String topic,
      int partition,
      long offset,
      byte[] key,
      byte[] value,
      Throwable error,
      String consumer) {
    return DeadLetter.newBuilder()
        .setTopic(topic)
        .setPartition(partition)
        .setOffset(offset)
        .setKey(key == null ? null : ByteBuffer.wrap(key))
        .setValue(value == null ? null : ByteBuffer.wrap(value))
        .setError(String.valueOf(error.getMessage()))
        .setErrorClass(error.getClass().getName())
        .setConsumer(consumer)
        .setTs(Instant.now())
        .build();
  }

  /**
   * Blocks until the broker acknowledged the dead letter, so the source offset may then be
   * committed.
   */
  public void send(
      String topic, int partition, long offset, String key, byte[] value, Throwable error) {
    String dlq = Topics.dlq(topic);
    DeadLetter letter =
        letter(
            topic,
            partition,
            offset,
            key == null ? null : key.getBytes(StandardCharsets.UTF_8),
            value,
            error,
            consumer);
    try {
      producer
          .send(new ProducerRecord<>(dlq, key, serializer.serialize(dlq, letter)))
          .get(30, TimeUnit.SECONDS);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new IllegalStateException("interrupted while writing to " + dlq, e);
    } catch (ExecutionException | TimeoutException e) {
      throw new IllegalStateException("cannot write dead letter to " + dlq + ": " + e, e);
    }
  }
}
