package io.distillery.runtime.serde;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import org.apache.avro.Schema;
import org.apache.avro.io.BinaryDecoder;
import org.apache.avro.io.BinaryEncoder;
import org.apache.avro.io.DecoderFactory;
import org.apache.avro.io.EncoderFactory;
import org.apache.avro.specific.SpecificData;
import org.apache.avro.specific.SpecificDatumReader;
import org.apache.avro.specific.SpecificDatumWriter;
import org.apache.avro.specific.SpecificRecord;
import org.apache.kafka.common.errors.SerializationException;
import org.apache.kafka.common.serialization.Deserializer;
import org.apache.kafka.common.serialization.Serde;
import org.apache.kafka.common.serialization.Serializer;

/**
 * Avro values in the Confluent wire format: magic byte 0, 4-byte big-endian schema id, Avro binary.
 * The writer schema is registered under the subject {@code <topic>-value} (TopicNameStrategy);
 * readers resolve the writer schema by id and read it into the generated class, which is how
 * BACKWARD-compatible evolution works on the wire.
 */
public final class AvroSerde<T extends SpecificRecord>
    implements Serde<T>, Serializer<T>, Deserializer<T> {

  public static final byte MAGIC = 0;

  private final SchemaRegistryClient registry;
  private final Class<T> type;
  private final Schema readerSchema;
  private final boolean isKey;
  private final Map<String, Integer> idByTopic = new ConcurrentHashMap<>();
  private final Map<Integer, SpecificDatumReader<T>> readers = new ConcurrentHashMap<>();
  private final SpecificDatumWriter<T> writer;

  public AvroSerde(SchemaRegistryClient registry, Class<T> type) {
    this(registry, type, false);
  }

  public AvroSerde(SchemaRegistryClient registry, Class<T> type, boolean isKey) {
    this.registry = registry;
    this.type = type;
    this.readerSchema = SpecificData.get().getSchema(type);
    this.isKey = isKey;
    this.writer = new SpecificDatumWriter<>(readerSchema);
  }

  public Class<T> type() {
    return type;
  }

  public static String subject(String topic, boolean isKey) {
    return topic + (isKey ? "-key" : "-value");
  }

  @Override
  public byte[] serialize(String topic, T data) {
    if (data == null) {
      return null;
    }
    int id =
        idByTopic.computeIfAbsent(topic, t -> registry.register(subject(t, isKey), readerSchema));
    ByteArrayOutputStream out = new ByteArrayOutputStream(256);
    out.write(MAGIC);
    out.writeBytes(ByteBuffer.allocate(4).putInt(id).array());
    try {
      BinaryEncoder enc = EncoderFactory.get().directBinaryEncoder(out, null);
      writer.write(data, enc);
      enc.flush();
    } catch (IOException | RuntimeException e) {
      throw new SerializationException(
          "cannot encode " + type.getSimpleName() + " for topic " + topic + ": " + e, e);
    }
    return out.toByteArray();
  }

  @Override
  public T deserialize(String topic, byte[] bytes) {
    if (bytes == null) {
      return null;
    }
    if (bytes.length < 5) {
      throw new SerializationException(
          "not a Confluent-framed Avro value on "
              + topic
              + ": "
              + bytes.length
              + " bytes, need at least 5 (magic byte + schema id)");
    }
    if (bytes[0] != MAGIC) {
      throw new SerializationException(
          "unknown magic byte "
              + bytes[0]
              + " on "
              + topic
              + " (expected 0, the Confluent wire format)");
    }
    int id = ByteBuffer.wrap(bytes, 1, 4).getInt();
    SpecificDatumReader<T> reader;
    try {
      reader =
          readers.computeIfAbsent(
              id, i -> new SpecificDatumReader<>(registry.schemaById(i), readerSchema));
    } catch (SchemaRegistryException e) {
      throw new SerializationException(
          "schema id " + id + " on " + topic + " cannot be resolved: " + e.getMessage(), e);
    }
    try {
      BinaryDecoder dec = DecoderFactory.get().binaryDecoder(bytes, 5, bytes.length - 5, null);
      T value = reader.read(null, dec);
      if (!dec.isEnd()) {
        throw new SerializationException(
            "trailing bytes after a " + type.getSimpleName() + " on " + topic);
      }
      return value;
    } catch (IOException | RuntimeException e) {
      if (e instanceof SerializationException se) {
        throw se;
      }
      throw new SerializationException(
          "cannot decode "
              + type.getSimpleName()
              + " (schema id "
              + id
              + ") on "
              + topic
              + ": "
              + e,
          e);
    }
  }

  @Override
  public Serializer<T> serializer() {
    return this;
  }

  @Override
  public Deserializer<T> deserializer() {
    return this;
  }

  @Override
  public void configure(Map<String, ?> configs, boolean isKey) {}

  @Override
  public void close() {}
}
