package io.distillery.runtime.kafka;

import io.distillery.runtime.serde.AvroSerde;
import io.distillery.runtime.serde.SchemaRegistryClient;
import io.distillery.runtime.serde.SchemaRegistryException;
import io.distillery.schemas.dlq.DeadLetter;
import java.io.IOException;
import java.util.List;
import java.util.Map;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.streams.errors.DeserializationExceptionHandler;
import org.apache.kafka.streams.errors.ErrorHandlerContext;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * For Kafka Streams apps: an undecodable record goes to {@code distillery.dlq.<topic>} as a {@link
 * DeadLetter} and processing resumes, so one bad record never stops a topology. Configured with
 * {@link #REGISTRY_URL} and {@link #CONSUMER_NAME} in the Streams properties.
 *
 * <p>A record that cannot be decoded because the schema registry is down or failing (unreachable,
 * or an HTTP 5xx) is not undecodable: the bytes may be fine. The handler waits {@link
 * #TRANSIENT_BACKOFF_MS} (default 1 s) and fails the task; the app's uncaught-exception handler
 * replaces the stream thread, which reads the record again from the last committed offset, so a
 * registry outage delays records and dead-letters none (as the worker loop does). A registry that
 * answers 4xx (an unknown schema id) means the bytes are wrong: dead-lettered.
 */
public final class DeadLetterHandler implements DeserializationExceptionHandler {

  public static final String REGISTRY_URL = "distillery.registry.url";
  public static final String CONSUMER_NAME = "distillery.consumer.name";

  /**
   * Milliseconds to wait before failing the task on a registry outage (so a restarted thread does
   * not spin).
   */
  public static final String TRANSIENT_BACKOFF_MS = "distillery.registry.backoff.ms";

  private static final long DEFAULT_BACKOFF_MS = 1_000;
  private static final Logger LOG = LoggerFactory.getLogger(DeadLetterHandler.class);

  private AvroSerde<DeadLetter> serde;
  private String consumer;
  private long backoffMs = DEFAULT_BACKOFF_MS;

  @Override
  public void configure(Map<String, ?> configs) {
    this.serde =
        new AvroSerde<>(
            new SchemaRegistryClient((String) configs.get(REGISTRY_URL)), DeadLetter.class);
    Object name = configs.get(CONSUMER_NAME);
    this.consumer = name == null ? String.valueOf(configs.get("application.id")) : name.toString();
    Object backoff = configs.get(TRANSIENT_BACKOFF_MS);
    if (backoff != null) {
      try {
        this.backoffMs = Long.parseLong(backoff.toString().trim());
      } catch (NumberFormatException e) {
        throw new IllegalArgumentException(
            TRANSIENT_BACKOFF_MS + " must be a number of milliseconds, got '" + backoff + "'", e);
      }
      if (backoffMs < 0) {
        throw new IllegalArgumentException(
            TRANSIENT_BACKOFF_MS + " must not be negative, got " + backoffMs);
      }
    }
  }

  /**
   * Whether decoding failed for a reason outside the record: the registry unreachable (a {@link
   * SchemaRegistryException} without HTTP status, or an {@link IOException} anywhere in the causes)
   * or failing (HTTP 5xx). The same rule as the worker loop's.
   */
  static boolean isTransient(Throwable e) {
    for (Throwable t = e; t != null; t = t.getCause() == t ? null : t.getCause()) {
      if (t instanceof SchemaRegistryException sre) {
        return sre.httpStatus() == 0 || sre.httpStatus() >= 500;
      }
      if (t instanceof IOException) {
        return true;
      }
    }
    return false;
  }

  @Override
  public Response handleError(
      ErrorHandlerContext context, ConsumerRecord<byte[], byte[]> record, Exception exception) {
    if (isTransient(exception)) {
      LOG.warn(
          "consumer={} topic={} offset={}:{} cannot be decoded while the schema registry is unavailable; the"
              + " task fails and its thread restarts in {} ms to read it again (not dead-lettered): {}",
          consumer,
          record.topic(),
          record.partition(),
          record.offset(),
          backoffMs,
          exception.getMessage());
      pause();
      return Response.fail();
    }
    String dlq = Topics.dlq(record.topic());
    LOG.warn(
        "consumer={} topic={} offset={}:{} undecodable, sent to {}: {}",
        consumer,
        record.topic(),
        record.partition(),
        record.offset(),
        dlq,
        exception.getMessage());
    DeadLetter letter =
        DeadLetters.letter(
            record.topic(),
            record.partition(),
            record.offset(),
            record.key(),
            record.value(),
            exception,
            consumer);
    return Response.resume(
        List.of(new ProducerRecord<>(dlq, record.key(), serde.serialize(dlq, letter))));
  }

  private void pause() {
    try {
      Thread.sleep(backoffMs);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }
}
