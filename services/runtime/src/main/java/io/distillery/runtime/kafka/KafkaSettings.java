package io.distillery.runtime.kafka;

import io.distillery.runtime.serde.AvroSerde;
import io.distillery.runtime.serde.SchemaRegistryClient;
import java.util.HashMap;
import java.util.Map;
import org.apache.avro.specific.SpecificRecord;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

/** Where the cluster and the registry are, and the client settings every Distillery service shares. */
public record KafkaSettings(String bootstrapServers, String registryUrl, SchemaRegistryClient registry) {

  public KafkaSettings {
    if (bootstrapServers == null || bootstrapServers.isBlank()) {
      throw new IllegalArgumentException("bootstrap servers are empty");
    }
  }

  public static KafkaSettings of(String bootstrapServers, String registryUrl) {
    return new KafkaSettings(bootstrapServers, registryUrl, new SchemaRegistryClient(registryUrl));
  }

  public <T extends SpecificRecord> AvroSerde<T> serde(Class<T> type) {
    return new AvroSerde<>(registry, type);
  }

  public Map<String, Object> common() {
    Map<String, Object> p = new HashMap<>();
    p.put("bootstrap.servers", bootstrapServers);
    return p;
  }

  /** Idempotent, acks=all, sent at once: events are small and latency matters more than batching. */
  public Map<String, Object> producer(String clientId) {
    Map<String, Object> p = common();
    p.put(ProducerConfig.CLIENT_ID_CONFIG, clientId);
    p.put(ProducerConfig.ACKS_CONFIG, "all");
    p.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, true);
    p.put(ProducerConfig.LINGER_MS_CONFIG, 0);
    p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class);
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
