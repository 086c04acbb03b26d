package io.distillery.cli;

import io.distillery.runtime.kafka.KafkaSettings;
import io.distillery.runtime.kafka.Topics;
import io.distillery.runtime.serde.AvroSerde;
import io.distillery.schemas.deployment.DeploymentEvent;
import io.distillery.schemas.misfire.Misfire;
import io.distillery.schemas.serving.ServingTraffic;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.PartitionInfo;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.TimeoutException;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Reads the deployments, serving-traffic and misfires topics from the start, without a consumer
 * group, into a {@link DeploymentBoard}. A topic that does not exist yet is looked for again on
 * later polls, so the page works on a stack where nothing was ever deployed.
 */
final class DeploymentsView implements AutoCloseable {

  private static final Logger LOG = LoggerFactory.getLogger(DeploymentsView.class);
  private static final List<String> TOPICS =
      List.of(Topics.DEPLOYMENTS, Topics.SERVING_TRAFFIC, Topics.MISFIRES);

  private final KafkaConsumer<String, byte[]> consumer;
  private final AvroSerde<DeploymentEvent> deployments;
  private final AvroSerde<ServingTraffic> traffic;
  private final AvroSerde<Misfire> misfires;
  private final DeploymentBoard board = new DeploymentBoard();
  private final Set<String> assigned = new LinkedHashSet<>();
  private long nextLookup;

  DeploymentsView(KafkaSettings kafka) {
    this.consumer = new KafkaConsumer<>(kafka.consumer(null, "distillery-cli-deployments"));
    this.deployments = kafka.serde(DeploymentEvent.class);
    this.traffic = kafka.serde(ServingTraffic.class);
    this.misfires = kafka.serde(Misfire.class);
  }

  DeploymentBoard board() {
    return board;
  }

  /** Polls once (after assigning topics that appeared); returns the deployments that changed. */
  Set<String> poll(Duration timeout) throws InterruptedException {
    assignNewTopics();
    Set<String> changed = new LinkedHashSet<>();
    if (assigned.isEmpty()) {
      Thread.sleep(timeout.toMillis());
      return changed;
    }
    for (ConsumerRecord<String, byte[]> rec : consumer.poll(timeout)) {
      if (rec.value() == null) {
        continue;
      }
      try {
        changed.add(
            switch (rec.topic()) {
              case Topics.DEPLOYMENTS ->
                  board.deployment(deployments.deserialize(rec.topic(), rec.value()));
              case Topics.SERVING_TRAFFIC ->
                  board.traffic(traffic.deserialize(rec.topic(), rec.value()));
              default -> board.misfire(misfires.deserialize(rec.topic(), rec.value()));
            });
      } catch (RuntimeException e) {
        // the page is a view: an undecodable record stays in the topic (and the consumers' DLQ);
        // skip it here
        LOG.warn(
            "runs page skips an undecodable record topic={} partition={} offset={} error={}",
            rec.topic(),
            rec.partition(),
            rec.offset(),
            e.toString());
      }
    }
    return changed;
  }

  private void assignNewTopics() {
    if (assigned.size() == TOPICS.size() || System.currentTimeMillis() < nextLookup) {
      return;
    }
    nextLookup = System.currentTimeMillis() + 5_000;
    List<TopicPartition> fresh = new ArrayList<>();
    Map<String, List<PartitionInfo>> known;
    try {
      known = consumer.listTopics(Duration.ofSeconds(5));
    } catch (TimeoutException e) {
      LOG.debug("runs page cannot list topics yet: {}", e.toString());
      return; // the broker is not reachable yet: looked for again on a later poll
    }
    for (String topic : TOPICS) {
      if (assigned.contains(topic)) {
        continue;
      }
      var parts = known.get(topic);
      if (parts != null && !parts.isEmpty()) {
        assigned.add(topic);
        parts.forEach(p -> fresh.add(new TopicPartition(p.topic(), p.partition())));
      }
    }
    if (!fresh.isEmpty()) {
      List<TopicPartition> all = new ArrayList<>(consumer.assignment());
      all.addAll(fresh);
      consumer.assign(all);
      consumer.seekToBeginning(fresh);
    }
  }

  @Override
  public void close() {
    consumer.close(Duration.ofSeconds(2));
  }
}
