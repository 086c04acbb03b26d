package io.distillery.feedback;

import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.util.Map;
import org.apache.kafka.common.errors.SerializationException;
import org.apache.kafka.common.serialization.Deserializer;
import org.apache.kafka.common.serialization.Serde;
import org.apache.kafka.common.serialization.Serializer;

/**
 * JSON for the service's own state-store values (windows, triggers): they never leave the service's
 * changelogs, so they need no registry; unknown fields are ignored so a newer instance reads an
 * older changelog.
 */
final class JsonSerde<T> implements Serde<T>, Serializer<T>, Deserializer<T> {

  static final ObjectMapper JSON =
      new ObjectMapper().configure(DeserializationFeature.FAIL_ON_UNKNOWN_PROPERTIES, false);

  private final Class<T> type;

  JsonSerde(Class<T> type) {
    this.type = type;
  }

  @Override
  public byte[] serialize(String topic, T data) {
    if (data == null) {
      return null;
    }
    try {
      return JSON.writeValueAsBytes(data);
    } catch (IOException e) {
      throw new SerializationException(
          "cannot write " + type.getSimpleName() + " as JSON: " + e.getMessage(), e);
    }
  }

  @Override
  public T deserialize(String topic, byte[] bytes) {
    if (bytes == null) {
      return null;
    }
    try {
      return JSON.readValue(bytes, type);
    } catch (IOException e) {
      throw new SerializationException(
          "cannot read " + type.getSimpleName() + " from JSON: " + e.getMessage(), e);
    }
  }

  @Override
  public void configure(Map<String, ?> configs, boolean isKey) {}

  @Override
  public void close() {}

  @Override
  public Serializer<T> serializer() {
    return this;
  }

  @Override
  public Deserializer<T> deserializer() {
    return this;
  }
}
