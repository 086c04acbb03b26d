package io.distillery.stack;

import static org.assertj.core.api.Assertions.assertThat;

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
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
import org.apache.kafka.common.TopicPartitionInfo;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.junit.jupiter.api.Test;

/**
 * Three nodes, replication 3, min in-sync 2: a node goes and acknowledged records stay readable,
 * writes go on.
 */
class KafkaClusterTest {

  @Test
  void shouldKeepEveryAcknowledgedRecordWhenANodeIsLost() throws Exception {
    try (KafkaCluster cluster = KafkaCluster.start(3, 2);
        Admin admin =
            Admin.create(
                Map.of(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, cluster.bootstrapServers()))) {
      admin.createTopics(List.of(new NewTopic("t", 3, (short) 3))).all().get(30, TimeUnit.SECONDS);
      try (KafkaProducer<String, String> producer = producer(cluster)) {
        for (int i = 0; i < 30; i++) {
          producer
              .send(new ProducerRecord<>("t", "k" + i, "before-" + i))
              .get(30, TimeUnit.SECONDS);
        }
        int victim = leaderOfPartitionZero(admin);
        cluster.stopNode(victim);
        for (int i = 0; i < 30; i++) {
          producer.send(new ProducerRecord<>("t", "k" + i, "after-" + i)).get(60, TimeUnit.SECONDS);
        }
        TopicDescription after =
            admin.describeTopics(List.of("t")).allTopicNames().get(30, TimeUnit.SECONDS).get("t");
        assertThat(after.partitions())
            .allSatisfy(p -> assertThat(p.leader().id()).isNotEqualTo(victim));
      }
      assertThat(readAll(cluster, 60)).hasSize(60);
      assertThat(cluster.replicationFactor()).isEqualTo(3);
    }
  }

  private static int leaderOfPartitionZero(Admin admin) throws Exception {
    TopicPartitionInfo p0 =
        admin
            .describeTopics(List.of("t"))
            .allTopicNames()
            .get(30, TimeUnit.SECONDS)
            .get("t")
            .partitions()
            .getFirst();
    assertThat(p0.replicas()).hasSize(3);
    return p0.leader().id();
  }

  private static KafkaProducer<String, String> producer(KafkaCluster cluster) {
    return new KafkaProducer<>(
        Map.of(
            ProducerConfig.BOOTSTRAP_SERVERS_CONFIG,
            cluster.bootstrapServers(),
            ProducerConfig.ACKS_CONFIG,
            "all",
            ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG,
            true,
            ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG,
            60_000),
        new StringSerializer(),
        new StringSerializer());
  }

  private static List<ConsumerRecord<String, String>> readAll(KafkaCluster cluster, int expected) {
    List<ConsumerRecord<String, String>> read = new ArrayList<>();
    try (KafkaConsumer<String, String> consumer =
        new KafkaConsumer<>(
            Map.of(
                ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG,
                cluster.bootstrapServers(),
                ConsumerConfig.GROUP_ID_CONFIG,
                "reader",
                ConsumerConfig.AUTO_OFFSET_RESET_CONFIG,
                "earliest"),
            new StringDeserializer(),
            new StringDeserializer())) {
      consumer.subscribe(List.of("t"));
      long deadline = System.nanoTime() + Duration.ofSeconds(60).toNanos();
      while (read.size() < expected && System.nanoTime() < deadline) {
        consumer.poll(Duration.ofMillis(200)).forEach(read::add);
      }
    }
    return read;
  }
}
