package io.distillery.runtime.kafka;

import java.util.ArrayList;
import java.util.Collection;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.common.config.TopicConfig;
import org.apache.kafka.common.errors.TopicExistsException;

/**
 * Creates the topics a service needs (idempotently), replicated as the service's {@link
 * TopicReplication} says, and lists what exists.
 */
public final class TopicAdmin implements AutoCloseable {

  public static final int DEFAULT_PARTITIONS = 3;

  private final Admin admin;
  private final TopicReplication replication;
  private final int partitions;

  /**
   * Topics of {@value #DEFAULT_PARTITIONS} partitions, replicated as {@code settings.replication()}
   * says.
   */
  public TopicAdmin(KafkaSettings settings) {
    this(settings, DEFAULT_PARTITIONS, settings.replication());
  }

  public TopicAdmin(KafkaSettings settings, int partitions, TopicReplication replication) {
    this.admin = Admin.create(settings.common());
    this.partitions = partitions;
    this.replication = replication;
  }

  /**
   * Ensures the platform's own topics exist: registered, job events, runs (compacted), deployments,
   * misfires.
   */
  public void ensurePlatformTopics() {
    ensure(
        List.of(
            Topics.MODELS_REGISTERED,
            Topics.JOB_EVENTS,
            Topics.DEPLOYMENTS,
            Topics.MISFIRES,
            Topics.SERVING_TRAFFIC),
        Map.of());
    ensure(
        List.of(Topics.RUNS),
        Map.of(TopicConfig.CLEANUP_POLICY_CONFIG, TopicConfig.CLEANUP_POLICY_COMPACT));
  }

  public void ensure(Collection<String> topics, Map<String, String> configs) {
    List<NewTopic> wanted = new ArrayList<>();
    for (String t : topics) {
      wanted.add(newTopic(t, partitions, replication, configs));
    }
    try {
      var results = admin.createTopics(wanted).values();
      for (var e : results.entrySet()) {
        try {
          e.getValue().get(30, TimeUnit.SECONDS);
        } catch (ExecutionException ex) {
          if (!(ex.getCause() instanceof TopicExistsException)) {
            throw new IllegalStateException(
                "cannot create topic " + e.getKey() + ": " + ex.getCause(), ex.getCause());
          }
        }
      }
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new IllegalStateException("interrupted while creating topics", e);
    } catch (TimeoutException e) {
      throw new IllegalStateException("timed out creating topics " + topics, e);
    }
  }

  /**
   * The topic as it is asked for: replication and min in-sync replicas from {@code replication},
   * else the broker's.
   */
  static NewTopic newTopic(
      String name, int partitions, TopicReplication replication, Map<String, String> configs) {
    NewTopic topic =
        replication.factor() > 0
            ? new NewTopic(name, partitions, (short) replication.factor())
            : new NewTopic(name, Optional.of(partitions), Optional.empty());
    return topic.configs(replication.topicConfigs(configs));
  }

  public Set<String> list() {
    try {
      return admin.listTopics().names().get(30, TimeUnit.SECONDS);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new IllegalStateException("interrupted while listing topics", e);
    } catch (ExecutionException | TimeoutException e) {
      throw new IllegalStateException("cannot list topics: " + e, e);
    }
  }

  public int partitionsOf(String topic) {
    try {
      return admin
          .describeTopics(List.of(topic))
          .allTopicNames()
          .get(30, TimeUnit.SECONDS)
          .get(topic)
          .partitions()
          .size();
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new IllegalStateException("interrupted", e);
    } catch (ExecutionException | TimeoutException e) {
      throw new IllegalStateException("cannot describe topic " + topic + ": " + e, e);
    }
  }

  public Admin admin() {
    return admin;
  }

  @Override
  public void close() {
    admin.close();
  }
}
