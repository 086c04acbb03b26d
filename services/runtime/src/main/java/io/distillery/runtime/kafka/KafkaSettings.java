package io.distillery.runtime.kafka;

import io.distillery.runtime.serde.AvroSerde;
import io.distillery.runtime.serde.SchemaRegistryClient;
import java.time.Duration;
import java.util.HashMap;
import java.util.Map;
import java.util.Objects;
import org.apache.avro.specific.SpecificRecord;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.common.config.TopicConfig;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.apache.kafka.streams.StreamsConfig;

/**
 * Where the cluster and the registry are, how replicated the topics a service creates are, and the
 * client settings every Distillery service shares.
 */
public record KafkaSettings(
    String bootstrapServers,
    String registryUrl,
    SchemaRegistryClient registry,
    TopicReplication replication) {

  public KafkaSettings {
    if (bootstrapServers == null || bootstrapServers.isBlank()) {
      throw new IllegalArgumentException("bootstrap servers are empty");
    }
    Objects.requireNonNull(replication, "replication");
  }

  /** Topics replicated as the cluster's defaults say. */
  public static KafkaSettings of(String bootstrapServers, String registryUrl) {
    return of(bootstrapServers, registryUrl, TopicReplication.BROKER_DEFAULT);
  }

  public static KafkaSettings of(
      String bootstrapServers, String registryUrl, TopicReplication replication) {
    return new KafkaSettings(
        bootstrapServers, registryUrl, new SchemaRegistryClient(registryUrl), replication);
  }

  /**
   * The same settings with a registry client that waits up to {@code budget} per call for a
   * registry that is down or failing ({@link SchemaRegistryClient#OUTAGE_RETRY_BUDGET} for threads
   * that should ride out a restart).
   */
  public KafkaSettings withRegistryRetry(Duration budget) {
    return new KafkaSettings(
        bootstrapServers, registryUrl, new SchemaRegistryClient(registryUrl, budget), replication);
  }

  public <T extends SpecificRecord> AvroSerde<T> serde(Class<T> type) {
    return new AvroSerde<>(registry, type);
  }

  public Map<String, Object> common() {
    Map<String, Object> p = new HashMap<>();
    p.put("bootstrap.servers", bootstrapServers);
    return p;
  }

  /**
   * Idempotent, acks=all, sent at once: events are small and latency matters more than batching.
   */
  public Map<String, Object> producer(String clientId) {
    Map<String, Object> p = common();
    p.put(ProducerConfig.CLIENT_ID_CONFIG, clientId);
    p.put(ProducerConfig.ACKS_CONFIG, "all");
    p.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, true);
    p.put(ProducerConfig.LINGER_MS_CONFIG, 0);
    p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class);
    return p;
  }

  /**
   * What a Kafka Streams app adds to its properties so that it writes as safely as the plain
   * producers: acks=all and idempotence on its producers (set explicitly, not left to client
   * defaults), and its internal topics (changelogs, repartition) replicated as {@link
   * #replication()} says.
   */
  public Map<String, Object> streams() {
    Map<String, Object> p = new HashMap<>();
    p.put(StreamsConfig.producerPrefix(ProducerConfig.ACKS_CONFIG), "all");
    p.put(StreamsConfig.producerPrefix(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG), true);
    p.put(StreamsConfig.REPLICATION_FACTOR_CONFIG, replication.factor());
    if (replication.minInsyncReplicas() > 0) {
      p.put(
          StreamsConfig.topicPrefix(TopicConfig.MIN_IN_SYNC_REPLICAS_CONFIG),
          replication.minInsyncReplicas());
    }
    return p;
  }

  /** Manual commits, raw bytes values (decoded by the caller so that failures can go to a DLQ). */
  public Map<String, Object> consumer(String groupId, String clientId) {
    Map<String, Object> p = common();
    if (groupId != null) {
      p.put(ConsumerConfig.GROUP_ID_CONFIG, groupId);
    }
    p.put(ConsumerConfig.CLIENT_ID_CONFIG, clientId);
    p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, false);
    p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
    p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class);
    p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class);
    return p;
  }
}
