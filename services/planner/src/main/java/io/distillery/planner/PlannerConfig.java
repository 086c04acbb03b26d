package io.distillery.planner;

import io.distillery.runtime.config.ConfigParameter;
import io.distillery.runtime.config.Settings;
import io.distillery.runtime.kafka.KafkaSettings;
import io.distillery.runtime.kafka.TopicReplication;
import io.distillery.runtime.serde.SchemaRegistryClient;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.Objects;

/**
 * Settings of the planner. From the environment: {@code DISTILLERY_PLANNER_<KEY>} or {@code
 * DISTILLERY_<KEY>}.
 *
 * @param bootstrap Kafka bootstrap servers (BOOTSTRAP)
 * @param registryUrl Confluent-compatible schema registry URL (REGISTRY)
 * @param applicationId Kafka Streams application id; its state and changelogs are keyed by it
 *     (APPLICATION_ID)
 * @param stateDir where the state stores live (STATE_DIR)
 * @param tick how often the clock checks timeouts and due retries (TICK)
 * @param retryBackoff first retry delay, doubling per attempt (RETRY_BACKOFF)
 * @param maxRetryBackoff cap of the retry delay (MAX_RETRY_BACKOFF)
 * @param threads stream threads; more than the partition count of the inputs idles (THREADS)
 * @param maxWaitingJobs how many dispatched jobs may wait for a worker before new runs are queued
 *     instead of started (MAX_WAITING_JOBS; 0, the default, for no limit). Stages of runs already
 *     started are never held back. Meant for a fixed pool of workers, as in {@code distillery up}:
 *     it keeps the jobs topics short, which is exactly the signal a lag-based autoscaler (KEDA in
 *     k8s/) scales workers on, so leave it at 0 where workers autoscale. A job whose stage has no
 *     live worker holds its slot until its timeout fails it.
 * @param replication replicas and min in-sync replicas of the topics the planner creates, its
 *     Streams changelogs included (REPLICATION_FACTOR, MIN_INSYNC_REPLICAS; -1, the default, for
 *     the broker's defaults)
 */
public record PlannerConfig(
    String bootstrap,
    String registryUrl,
    String applicationId,
    Path stateDir,
    Duration tick,
    Duration retryBackoff,
    Duration maxRetryBackoff,
    int threads,
    int maxWaitingJobs,
    TopicReplication replication) {

  /** No admission limit: every run starts when it is registered. */
  public static final int UNLIMITED = 0;

  static final ConfigParameter<String> BOOTSTRAP =
      ConfigParameter.required("BOOTSTRAP", "Kafka bootstrap servers");
  static final ConfigParameter<String> REGISTRY =
      ConfigParameter.required("REGISTRY", "Confluent-compatible schema registry URL");
  static final ConfigParameter<String> APPLICATION_ID =
      ConfigParameter.text(
          "APPLICATION_ID",
          "distillery-planner",
          "Kafka Streams application id; its state and changelogs are keyed by it");
  static final ConfigParameter<Path> STATE_DIR =
      ConfigParameter.of("STATE_DIR", "run/planner-state", Path::of, "where the state stores live");
  static final ConfigParameter<Duration> TICK =
      ConfigParameter.duration(
          "TICK", "250ms", "how often the clock checks timeouts and due retries");
  static final ConfigParameter<Duration> RETRY_BACKOFF =
      ConfigParameter.duration("RETRY_BACKOFF", "1s", "first retry delay, doubling per attempt");
  static final ConfigParameter<Duration> MAX_RETRY_BACKOFF =
      ConfigParameter.duration("MAX_RETRY_BACKOFF", "30s", "cap of the retry delay");
  static final ConfigParameter<Integer> THREADS =
      ConfigParameter.integer(
          "THREADS", 2, "stream threads; more than the partition count of the inputs idles");
  static final ConfigParameter<Integer> MAX_WAITING_JOBS =
      ConfigParameter.integer(
          "MAX_WAITING_JOBS",
          UNLIMITED,
          "dispatched jobs that may wait for a worker before new runs queue (0: no limit; leave 0 where workers autoscale)");

  /** Every setting of the planner, in one table. */
  public static final List<ConfigParameter<?>> PARAMETERS =
      List.of(
          BOOTSTRAP,
          REGISTRY,
          APPLICATION_ID,
          STATE_DIR,
          TICK,
          RETRY_BACKOFF,
          MAX_RETRY_BACKOFF,
          THREADS,
          MAX_WAITING_JOBS,
          TopicReplication.REPLICATION_FACTOR,
          TopicReplication.MIN_INSYNC_REPLICAS);

  public PlannerConfig {
    if (tick.isZero() || tick.isNegative()) {
      throw new IllegalArgumentException("tick must be positive");
    }
    if (threads < 1) {
      throw new IllegalArgumentException("threads must be at least 1");
    }
    if (maxWaitingJobs < 0) {
      throw new IllegalArgumentException(
          "maxWaitingJobs must be 0 (no limit) or more, was " + maxWaitingJobs);
    }
    Objects.requireNonNull(replication, "replication");
  }

  public static PlannerConfig of(String bootstrap, String registryUrl, Path stateDir) {
    return new PlannerConfig(
        bootstrap,
        registryUrl,
        APPLICATION_ID.defaultValue(),
        stateDir,
        TICK.defaultValue(),
        RETRY_BACKOFF.defaultValue(),
        MAX_RETRY_BACKOFF.defaultValue(),
        THREADS.defaultValue(),
        MAX_WAITING_JOBS.defaultValue(),
        TopicReplication.BROKER_DEFAULT);
  }

  public static PlannerConfig from(Settings s) {
    return new PlannerConfig(
        BOOTSTRAP.read(s),
        REGISTRY.read(s),
        APPLICATION_ID.read(s),
        STATE_DIR.read(s),
        TICK.read(s),
        RETRY_BACKOFF.read(s),
        MAX_RETRY_BACKOFF.read(s),
        THREADS.read(s),
        MAX_WAITING_JOBS.read(s),
        TopicReplication.from(s));
  }

  public static PlannerConfig fromEnv(Map<String, String> env) {
    return from(new Settings("planner", env));
  }

  public PlannerConfig withBackoff(Duration initial, Duration max) {
    return new PlannerConfig(
        bootstrap,
        registryUrl,
        applicationId,
        stateDir,
        tick,
        initial,
        max,
        threads,
        maxWaitingJobs,
        replication);
  }

  public PlannerConfig withMaxWaitingJobs(int value) {
    return new PlannerConfig(
        bootstrap,
        registryUrl,
        applicationId,
        stateDir,
        tick,
        retryBackoff,
        maxRetryBackoff,
        threads,
        value,
        replication);
  }

  public PlannerConfig withReplication(TopicReplication value) {
    return new PlannerConfig(
        bootstrap,
        registryUrl,
        applicationId,
        stateDir,
        tick,
        retryBackoff,
        maxRetryBackoff,
        threads,
        maxWaitingJobs,
        value);
  }

  /**
   * The cluster and registry the planner talks to, with its topic replication; its registry calls
   * wait out a registry restart ({@link SchemaRegistryClient#OUTAGE_RETRY_BUDGET}) rather than fail
   * a stream thread.
   */
  public KafkaSettings kafka() {
    return KafkaSettings.of(bootstrap, registryUrl, replication)
        .withRegistryRetry(SchemaRegistryClient.OUTAGE_RETRY_BUDGET);
  }
}
