package io.distillery.runtime.kafka;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.distillery.runtime.config.Settings;
import java.util.Map;
import org.apache.kafka.clients.admin.NewTopic;
import org.junit.jupiter.api.Test;

/**
 * Topics a service creates are replicated as its settings say, or exactly as the broker's defaults
 * say.
 */
class TopicReplicationTest {

  @Test
  void shouldAskForTheFactorAndMinInsyncReplicasWhenSet() {
    NewTopic topic =
        TopicAdmin.newTopic(
            "distillery.job.events",
            3,
            new TopicReplication(3, 2),
            Map.of("cleanup.policy", "compact"));

    assertThat(topic.numPartitions()).isEqualTo(3);
    assertThat(topic.replicationFactor()).isEqualTo((short) 3);
    assertThat(topic.configs())
        .containsExactlyInAnyOrderEntriesOf(
            Map.of("cleanup.policy", "compact", "min.insync.replicas", "2"));
  }

  @Test
  void shouldLeaveBothToTheBrokerByDefault() {
    NewTopic topic =
        TopicAdmin.newTopic("distillery.runs", 3, TopicReplication.BROKER_DEFAULT, Map.of());

    assertThat(topic.replicationFactor()).isEqualTo((short) -1); // NewTopic's "broker default"
    assertThat(topic.configs()).doesNotContainKey("min.insync.replicas");
  }

  @Test
  void shouldReadBothFromTheSharedSettings() {
    Settings s =
        new Settings(
            "worker",
            Map.of(
                "DISTILLERY_REPLICATION_FACTOR",
                "3",
                "DISTILLERY_WORKER_MIN_INSYNC_REPLICAS",
                "2"));

    assertThat(TopicReplication.from(s)).isEqualTo(new TopicReplication(3, 2));
    assertThat(TopicReplication.from(new Settings("worker", Map.of())))
        .isEqualTo(TopicReplication.BROKER_DEFAULT);
  }

  @Test
  void shouldRefuseAMinInsyncAboveTheFactor() {
    assertThatThrownBy(() -> new TopicReplication(1, 2))
        .hasMessageContaining("min.insync.replicas 2")
        .hasMessageContaining("replication factor 1");
    assertThatThrownBy(() -> new TopicReplication(0, -1))
        .hasMessageContaining("replication factor");
  }

  @Test
  void shouldMakeStreamsAppsWriteWithAcksAllIdempotenceAndTheReplication() {
    KafkaSettings kafka = KafkaSettings.of("b:9092", "http://r", new TopicReplication(3, 2));

    assertThat(kafka.streams())
        .containsEntry("producer.acks", "all")
        .containsEntry("producer.enable.idempotence", true)
        .containsEntry("replication.factor", 3)
        .containsEntry("topic.min.insync.replicas", 2);
    assertThat(KafkaSettings.of("b:9092", "http://r").streams())
        .containsEntry("replication.factor", -1)
        .doesNotContainKey("topic.min.insync.replicas");
    assertThat(kafka.producer("p"))
        .containsEntry("acks", "all")
        .containsEntry("enable.idempotence", true);
  }
}
