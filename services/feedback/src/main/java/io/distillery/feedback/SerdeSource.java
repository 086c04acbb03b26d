package io.distillery.feedback;

import org.apache.avro.specific.SpecificRecord;
import org.apache.kafka.common.serialization.Serde;

/**
 * Where the topology gets its Avro serdes: the registry-backed {@code KafkaSettings::serde} in
 * production.
 */
@FunctionalInterface
public interface SerdeSource {
  <T extends SpecificRecord> Serde<T> serde(Class<T> type);
}
