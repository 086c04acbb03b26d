package io.distillery.runtime.kafka;

import io.distillery.runtime.config.ConfigParameter;
import io.distillery.runtime.config.Settings;
import java.util.HashMap;
import java.util.Map;
import org.apache.kafka.common.config.TopicConfig;

/**
 * How many copies of each record the topics a service creates keep, and how many of them must have
 * a write before a producer with {@code acks=all} is answered. On a cluster of three brokers,
 * factor 3 with min in-sync 2 lets one broker go without losing an acknowledged record or stopping
 * writes. {@link #BROKER_DEFAULT} (-1 for either) leaves the choice to the cluster's {@code
 * default.replication.factor} and {@code min.insync.replicas}: 1 and 1 on the local stack's single
 * broker, whatever the operator set on a provisioned cluster (k8s/kafka.yaml: 3 and 2), so that a
 * service never creates a topic weaker than its cluster intends.
 *
 * @param factor replicas per partition of a topic the service creates, or -1 for the broker default
 * @param minInsyncReplicas the {@code min.insync.replicas} of those topics, or -1 for the broker
 *     default
 */
public record TopicReplication(int factor, int minInsyncReplicas) {

  /** Both from the cluster's own defaults. */
  public static final TopicReplication BROKER_DEFAULT = new TopicReplication(-1, -1);

  public static final ConfigParameter<Integer> REPLICATION_FACTOR =
      ConfigParameter.integer(
          "REPLICATION_FACTOR",
          -1,
          "replicas of each topic the service creates (and of Kafka Streams internal topics); -1: the broker default");
  public static final ConfigParameter<Integer> MIN_INSYNC_REPLICAS =
      ConfigParameter.integer(
          "MIN_INSYNC_REPLICAS",
          -1,
          "min.insync.replicas of the topics the service creates; -1: the broker default");

  public TopicReplication {
    if (factor == 0 || factor < -1 || factor > Short.MAX_VALUE) {
      throw new IllegalArgumentException(
          "replication factor must be -1 (broker default) or 1.."
              + Short.MAX_VALUE
              + ", was "
              + factor);
    }
    if (minInsyncReplicas == 0 || minInsyncReplicas < -1) {
      throw new IllegalArgumentException(
          "min.insync.replicas must be -1 (broker default) or positive, was " + minInsyncReplicas);
    }
    if (factor > 0 && minInsyncReplicas > factor) {
      throw new IllegalArgumentException(
          "min.insync.replicas "
              + minInsyncReplicas
              + " exceeds the replication factor "
              + factor
              + ": no write could ever be acknowledged");
    }
  }

  public static TopicReplication from(Settings s) {
    return new TopicReplication(REPLICATION_FACTOR.read(s), MIN_INSYNC_REPLICAS.read(s));
  }

  /**
   * The topic configs to create a topic with: {@code extra} plus {@code min.insync.replicas} when
   * it is set.
   */
  public Map<String, String> topicConfigs(Map<String, String> extra) {
    Map<String, String> configs = new HashMap<>(extra);
    if (minInsyncReplicas > 0) {
      configs.put(TopicConfig.MIN_IN_SYNC_REPLICAS_CONFIG, Integer.toString(minInsyncReplicas));
    }
    return configs;
  }
}
