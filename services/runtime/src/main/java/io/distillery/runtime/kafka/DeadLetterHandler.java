package io.distillery.runtime.kafka;

import io.distillery.runtime.serde.AvroSerde;
import io.distillery.runtime.serde.SchemaRegistryClient;
import io.distillery.schemas.dlq.DeadLetter;
import java.util.List;
import java.util.Map;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.streams.errors.DeserializationExceptionHandler;
import org.apache.kafka.streams.errors.ErrorHandlerContext;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * For Kafka Streams apps: an undecodable record goes to {@code distillery.dlq.<topic>} as a {@link DeadLetter} and
 * processing resumes, so one bad record never stops a topology. Configured with {@link #REGISTRY_URL} and
 * {@link #CONSUMER_NAME} in the Streams properties.
 */
public final class DeadLetterHandler implements DeserializationExceptionHandler {

  public static final String REGISTRY_URL = "distillery.registry.url";
  public static final String CONSUMER_NAME = "distillery.consumer.name";
  private static final Logger LOG = LoggerFactory.getLogger(DeadLetterHandler.class);

  private AvroSerde<DeadLetter> serde;
  private String consumer;

  @Override
  public void configure(Map<String, ?> configs) {
    this.serde = new AvroSerde<>(new SchemaRegistryClient((String) configs.get(REGISTRY_URL)), DeadLetter.class);
    Object name = configs.get(CONSUMER_NAME);
    this.consumer = name == null ? String.valueOf(configs.get("application.id")) : name.toString();
  }

  @Override
  public Response handleError(ErrorHandlerContext context, ConsumerRecord<byte[], byte[]> record, Exception exception) {
    String dlq = Topics.dlq(record.topic());
    LOG.warn("consumer={} topic={} offset={}:{} undecodable, sent to {}: {}", consumer, record.topic(),
        record.partition(), record.offset(), dlq, exception.getMessage());
    DeadLetter letter = DeadLetters.letter(record.topic(), record.partition(), record.offset(), record.key(),
        record.value(), exception, consumer);
    return Response.resume(List.of(new ProducerRecord<>(dlq, record.key(), serde.serialize(dlq, letter))));
  }
}
