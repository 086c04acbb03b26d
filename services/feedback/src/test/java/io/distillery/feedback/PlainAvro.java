package io.distillery.feedback;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.UncheckedIOException;
import org.apache.avro.io.BinaryEncoder;
import org.apache.avro.io.DecoderFactory;
import org.apache.avro.io.EncoderFactory;
import org.apache.avro.specific.SpecificDatumReader;
import org.apache.avro.specific.SpecificDatumWriter;
import org.apache.avro.specific.SpecificRecord;
import org.apache.kafka.common.serialization.Serde;
import org.apache.kafka.common.serialization.Serdes;

/**
 * Avro binary without the registry's wire header: the topology's serdes in TopologyTestDriver
 * tests.
 */
final class PlainAvro implements SerdeSource {

  @Override
  public <T extends SpecificRecord> Serde<T> serde(Class<T> type) {
    return Serdes.serdeFrom(
        (topic, data) -> {
          if (data == null) {
            return null;
          }
          try {
            ByteArrayOutputStream out = new ByteArrayOutputStream();
            BinaryEncoder enc = EncoderFactory.get().binaryEncoder(out, null);
            new SpecificDatumWriter<>(type).write(data, enc);
            enc.flush();
            return out.toByteArray();
          } catch (IOException e) {
            throw new UncheckedIOException(e);
          }
        },
        (topic, bytes) -> {
          if (bytes == null) {
            return null;
          }
          try {
            return new SpecificDatumReader<>(type)
                .read(null, DecoderFactory.get().binaryDecoder(bytes, null));
          } catch (IOException e) {
            throw new UncheckedIOException(e);
          }
        });
  }
}
