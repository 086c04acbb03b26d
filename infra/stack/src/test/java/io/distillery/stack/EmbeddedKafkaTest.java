package io.distillery.stack;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.errors.TimeoutException;
import org.apache.kafka.common.errors.UnknownTopicOrPartitionException;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.Produced;
import org.assertj.core.groups.Tuple;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class EmbeddedKafkaTest {

  private static final Duration AWAIT = Duration.ofSeconds(30);

  @TempDir Path tempDir;

  @Test
  void shouldConsumeProducedRecordWhenTopicCreated() throws Exception {
    try (EmbeddedKafka kafka = EmbeddedKafka.start(tempDir.resolve("kafka"))) {
      createTopic(kafka, "distillery.test.events", 3);

      RecordMetadata written = produce(kafka, "distillery.test.events", "run-1", "hello");
      List<ConsumerRecord<String, String>> read =
          consumeAtLeast(kafka, "distillery.test.events", 1);

      assertThat(read)
          .singleElement()
          .satisfies(
              r -> {
                assertThat(r.key()).isEqualTo("run-1");
                assertThat(r.value()).isEqualTo("hello");
                assertThat(r.partition()).isEqualTo(written.partition());
              });
    }
  }

  @Test
  void shouldKeepTopicAndRecordsWhenRestartedOnSameDataDir() throws Exception {
    Path dataDir = tempDir.resolve("kafka");
    String clusterId;
    try (EmbeddedKafka kafka = EmbeddedKafka.start(dataDir)) {
      clusterId = kafka.clusterId();
      createTopic(kafka, "distillery.runs", 3);
      produce(kafka, "distillery.runs", "run-7", "state-after-calib");
    }

    try (EmbeddedKafka restarted = EmbeddedKafka.start(dataDir)) {
      assertThat(restarted.clusterId()).isEqualTo(clusterId);
      try (Admin admin = admin(restarted)) {
        Map<String, TopicDescription> topics =
            admin
                .describeTopics(Set.of("distillery.runs"))
                .allTopicNames()
                .get(30, TimeUnit.SECONDS);
        TopicDescription topic = topics.get("distillery.runs");
        assertThat(topic.partitions()).hasSize(3);
      }
      List<ConsumerRecord<String, String>> read = consumeAtLeast(restarted, "distillery.runs", 1);
      assertThat(read)
          .extracting(ConsumerRecord::key, ConsumerRecord::value)
          .containsExactly(Tuple.tuple("run-7", "state-after-calib"));
    }
  }

  @Test
  void shouldNotCreateTopicWhenProducingToUnknownTopic() throws Exception {
    try (EmbeddedKafka kafka = EmbeddedKafka.start(tempDir.resolve("kafka"));
        KafkaProducer<String, String> producer =
            producer(kafka, Map.of(ProducerConfig.MAX_BLOCK_MS_CONFIG, 1_000))) {
      assertThatThrownBy(
              () -> producer.send(new ProducerRecord<>("distillery.unknown", "k", "v")).get())
          .hasCauseInstanceOf(TimeoutException.class)
          .hasRootCauseInstanceOf(UnknownTopicOrPartitionException.class);
      try (Admin admin = admin(kafka)) {
        assertThat(admin.listTopics().names().get(30, TimeUnit.SECONDS))
            .doesNotContain("distillery.unknown");
      }
    }
  }

  /**
   * Kafka Streams with exactly-once needs the transaction log and internal topics to work on a
   * single replica.
   */
  @Test
  void shouldRunExactlyOnceStreamsAppWhenBrokerHasOneReplica() throws Exception {
    try (EmbeddedKafka kafka = EmbeddedKafka.start(tempDir.resolve("kafka"))) {
      createTopic(kafka, "distillery.test.stages", 3);
      createTopic(kafka, "distillery.test.stage-counts", 3);
      StreamsBuilder builder = new StreamsBuilder();
      builder.stream("distillery.test.stages", Consumed.with(Serdes.String(), Serdes.String()))
          .groupBy((runId, stage) -> stage, Grouped.with(Serdes.String(), Serdes.String()))
          .count()
          .toStream()
          .mapValues(String::valueOf)
          .to("distillery.test.stage-counts", Produced.with(Serdes.String(), Serdes.String()));
      Properties config = new Properties();
      config.put(StreamsConfig.APPLICATION_ID_CONFIG, "distillery-test-counts");
      config.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, kafka.bootstrapServers());
      config.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.EXACTLY_ONCE_V2);
      config.put(StreamsConfig.STATE_DIR_CONFIG, tempDir.resolve("streams").toString());
      config.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, 100);

      try (KafkaStreams streams = new KafkaStreams(builder.build(), config)) {
        streams.start();
        produce(kafka, "distillery.test.stages", "run-1", "quantizer");
        produce(kafka, "distillery.test.stages", "run-2", "quantizer");
        produce(kafka, "distillery.test.stages", "run-3", "pruner");

        Map<String, String> expected = Map.of("quantizer", "2", "pruner", "1");
        assertThat(awaitLatestCommitted(kafka, "distillery.test.stage-counts", expected))
            .containsAllEntriesOf(expected);
      }
    }
  }

  @Test
  void shouldDeleteTempDataDirWhenClosed() {
    Path dataDir;
    try (EmbeddedKafka kafka = EmbeddedKafka.start()) {
      dataDir = kafka.dataDir();
      assertThat(dataDir.resolve(EmbeddedKafka.LOG_DIR_NAME).resolve("meta.properties"))
          .isRegularFile();
    }
    assertThat(Files.exists(dataDir)).isFalse();
  }

  private static Admin admin(EmbeddedKafka kafka) {
    return Admin.create(
        Map.of(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, kafka.bootstrapServers()));
  }

  private static void createTopic(EmbeddedKafka kafka, String name, int partitions)
      throws Exception {
    try (Admin admin = admin(kafka)) {
      admin
          .createTopics(List.of(new NewTopic(name, partitions, (short) 1)))
          .all()
          .get(30, TimeUnit.SECONDS);
    }
  }

  private static KafkaProducer<String, String> producer(
      EmbeddedKafka kafka, Map<String, Object> extra) {
    Map<String, Object> config =
        new HashMap<>(
            Map.of(
                ProducerConfig.BOOTSTRAP_SERVERS_CONFIG,
                kafka.bootstrapServers(),
                ProducerConfig.ACKS_CONFIG,
                "all"));
    config.putAll(extra);
    return new KafkaProducer<>(config, new StringSerializer(), new StringSerializer());
  }

  private static RecordMetadata produce(EmbeddedKafka kafka, String topic, String key, String value)
      throws Exception {
    try (KafkaProducer<String, String> producer = producer(kafka, Map.of())) {
      return producer.send(new ProducerRecord<>(topic, key, value)).get(30, TimeUnit.SECONDS);
    }
  }

  /**
   * Reads committed records of {@code topic} until the latest value per key includes {@code
   * expected}.
   */
  private static Map<String, String> awaitLatestCommitted(
      EmbeddedKafka kafka, String topic, Map<String, String> expected) {
    Map<String, Object> config =
        Map.of(
            ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG,
            kafka.bootstrapServers(),
            ConsumerConfig.GROUP_ID_CONFIG,
            "test-" + System.nanoTime(),
            ConsumerConfig.AUTO_OFFSET_RESET_CONFIG,
            "earliest",
            ConsumerConfig.ISOLATION_LEVEL_CONFIG,
            "read_committed");
    Map<String, String> latest = new HashMap<>();
    try (KafkaConsumer<String, String> consumer =
        new KafkaConsumer<>(config, new StringDeserializer(), new StringDeserializer())) {
      consumer.subscribe(List.of(topic));
      long deadline = System.nanoTime() + AWAIT.toNanos();
      while (System.nanoTime() < deadline && !latest.entrySet().containsAll(expected.entrySet())) {
        consumer.poll(Duration.ofMillis(200)).forEach(r -> latest.put(r.key(), r.value()));
      }
    }
    return latest;
  }

  /**
   * Reads {@code topic} from the beginning with a fresh group until {@code count} records arrived
   * or AWAIT passed.
   */
  private static List<ConsumerRecord<String, String>> consumeAtLeast(
      EmbeddedKafka kafka, String topic, int count) {
    Map<String, Object> config =
        Map.of(
            ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG,
            kafka.bootstrapServers(),
            ConsumerConfig.GROUP_ID_CONFIG,
            "test-" + System.nanoTime(),
            ConsumerConfig.AUTO_OFFSET_RESET_CONFIG,
            "earliest");
    List<ConsumerRecord<String, String>> records = new ArrayList<>();
    try (KafkaConsumer<String, String> consumer =
        new KafkaConsumer<>(config, new StringDeserializer(), new StringDeserializer())) {
      consumer.subscribe(List.of(topic));
      long deadline = System.nanoTime() + AWAIT.toNanos();
      while (records.size() < count && System.nanoTime() < deadline) {
        consumer.poll(Duration.ofMillis(200)).forEach(records::add);
      }
    }
    return records;
  }
}
