package io.distillery.runtime.kafka;

import java.util.ArrayList;
import java.util.Collection;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.common.config.TopicConfig;
import org.apache.kafka.common.errors.TopicExistsException;

/** Creates the topics a service needs (idempotently) and lists what exists. */
public final class TopicAdmin implements AutoCloseable {

  public static final int DEFAULT_PARTITIONS = 3;

  private final Admin admin;
  private final short replication;
  private final int partitions;

  public TopicAdmin(KafkaSettings settings) {
    this(settings, DEFAULT_PARTITIONS, (short) -1);
  }

  /** {@code replication} -1 takes the broker default. */
  public TopicAdmin(KafkaSettings settings, int partitions, short replication) {
    this.admin = Admin.create(settings.common());
    this.partitions = partitions;
    this.replication = replication;
  }

  /** Ensures the platform's own topics exist: registered, job events, runs (compacted), deployments, misfires. */
  public void ensurePlatformTopics() {
    ensure(List.of(Topics.MODELS_REGISTERED, Topics.JOB_EVENTS, Topics.DEPLOYMENTS, Topics.MISFIRES,
        Topics.SERVING_TRAFFIC), Map.of());
    ensure(List.of(Topics.RUNS), Map.of(TopicConfig.CLEANUP_POLICY_CONFIG, TopicConfig.CLEANUP_POLICY_COMPACT));
  }

  public void ensure(Collection<String> topics, Map<String, String> configs) {
    List<NewTopic> wanted = new ArrayList<>();
    for (String t : topics) {
      NewTopic nt = replication > 0
          ? new NewTopic(t, partitions, replication)
          : new NewTopic(t, java.util.Optional.of(partitions), java.util.Optional.empty());
      wanted.add(nt.configs(configs));
    }
    try {
      var results = admin.createTopics(wanted).values();
      for (var e : results.entrySet()) {
        try {
          e.getValue().get(30, TimeUnit.SECONDS);
        } catch (ExecutionException ex) {
          if (!(ex.getCause() instanceof TopicExistsException)) {
            throw new IllegalStateException("cannot create topic " + e.getKey() + ": " + ex.getCause(), ex.getCause());
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
      return admin.describeTopics(List.of(topic)).allTopicNames().get(30, TimeUnit.SECONDS)
          .get(topic).partitions().size();
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
