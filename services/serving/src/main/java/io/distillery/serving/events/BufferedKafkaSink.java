package io.distillery.serving.events;

import io.distillery.runtime.kafka.KafkaSettings;
import io.distillery.runtime.serde.AvroSerde;
import java.time.Duration;
import java.util.Map;
import java.util.concurrent.ArrayBlockingQueue;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.TimeUnit;
import org.apache.avro.specific.SpecificRecord;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * A bounded in-memory buffer in front of a Kafka producer, drained by one background thread: the
 * request path only ever does a non-blocking {@code offer}. While the broker or the registry is
 * down the thread blocks (at most {@code max.block.ms} per event) or fails the sends, the buffer
 * fills, and further events are dropped and counted by their {@code onDrop}; the node keeps
 * serving.
 */
public final class BufferedKafkaSink implements EventSink {

  private static final Logger LOG = LoggerFactory.getLogger(BufferedKafkaSink.class);

  private record Pending(String topic, String key, SpecificRecord value, Runnable onDrop) {}

  private final BlockingQueue<Pending> buffer;
  private final KafkaProducer<String, byte[]> producer;
  private final KafkaSettings kafka;
  private final Map<Class<?>, AvroSerde<SpecificRecord>> serdes = new ConcurrentHashMap<>();
  private final Thread thread;
  private volatile boolean closed;

  public BufferedKafkaSink(KafkaSettings kafka, String clientId, int capacity, Duration maxBlock) {
    this.kafka = kafka;
    this.buffer = new ArrayBlockingQueue<>(capacity);
    Map<String, Object> p = kafka.producer(clientId);
    p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class);
    p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class);
    p.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, (int) maxBlock.toMillis());
    p.put(ProducerConfig.REQUEST_TIMEOUT_MS_CONFIG, 5_000);
    p.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, 30_000);
    this.producer = new KafkaProducer<>(p);
    this.thread = new Thread(this::drain, "serving-events-" + clientId);
    thread.setDaemon(true);
    thread.start();
  }

  @Override
  public void offer(String topic, String key, SpecificRecord value, Runnable onDrop) {
    if (closed || !buffer.offer(new Pending(topic, key, value, onDrop))) {
      onDrop.run();
    }
  }

  /** Events waiting in the buffer. */
  public int buffered() {
    return buffer.size();
  }

  private void drain() {
    while (!closed || !buffer.isEmpty()) {
      Pending e;
      try {
        e = buffer.poll(100, TimeUnit.MILLISECONDS);
      } catch (InterruptedException ie) {
        Thread.currentThread().interrupt();
        break;
      }
      if (e != null) {
        send(e);
      }
    }
    Pending left;
    while ((left = buffer.poll()) != null) {
      left.onDrop().run();
    }
  }

  @SuppressWarnings("unchecked")
  private void send(Pending e) {
    try {
      AvroSerde<SpecificRecord> serde =
          serdes.computeIfAbsent(
              e.value().getClass(),
              c -> (AvroSerde<SpecificRecord>) kafka.serde((Class<SpecificRecord>) c));
      byte[] bytes = serde.serialize(e.topic(), e.value());
      producer.send(
          new ProducerRecord<>(e.topic(), e.key(), bytes),
          (md, error) -> {
            if (error != null) {
              LOG.warn(
                  "event not delivered topic={} key={} error={}",
                  e.topic(),
                  e.key(),
                  error.toString());
              e.onDrop().run();
            }
          });
    } catch (RuntimeException error) {
      // broker metadata unavailable within max.block.ms, or the registry is down: drop this one and
      // go on
      LOG.warn("event dropped topic={} key={} error={}", e.topic(), e.key(), error.toString());
      e.onDrop().run();
    }
  }

  /**
   * Sends what is buffered (up to {@code grace}), then stops; what is left is dropped and counted.
   */
  public void close(Duration grace) {
    closed = true;
    try {
      thread.join(grace.toMillis());
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
    thread.interrupt();
    producer.close(Duration.ofSeconds(2));
  }

  @Override
  public void close() {
    close(Duration.ofSeconds(5));
  }
}
