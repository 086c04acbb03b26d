package io.distillery.runtime.worker;

import io.distillery.runtime.config.ConfigParameter;
import io.distillery.runtime.config.Settings;
import io.distillery.runtime.kafka.KafkaSettings;
import io.distillery.runtime.kafka.TopicReplication;
import io.distillery.runtime.serde.SchemaRegistryClient;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Objects;

/**
 * Settings of a worker host. From the environment: {@code DISTILLERY_WORKER_<KEY>} or {@code
 * DISTILLERY_<KEY>}.
 *
 * @param bootstrap Kafka bootstrap servers (BOOTSTRAP)
 * @param registryUrl Confluent-compatible schema registry base URL (REGISTRY)
 * @param storeRoot root of the file artefact store (STORE)
 * @param readRoots extra directories artefact URIs may point into, read-only (READ_ROOTS,
 *     ':'-separated)
 * @param workerId identity in events and client ids (ID; blank, the default, for {@code
 *     worker-<pid>})
 * @param httpHost address the health and metrics endpoint binds (HTTP_HOST; 0.0.0.0 in a pod)
 * @param httpPort health and metrics port; 0 picks a free one, -1 disables HTTP (HTTP_PORT)
 * @param heartbeat re-send the last progress when a stage has been quiet this long (HEARTBEAT)
 * @param progressInterval at most one progress event per this interval (PROGRESS_INTERVAL)
 * @param shutdownGrace on SIGTERM, how long a running job may take to finish before it is abandoned
 *     (SHUTDOWN_GRACE)
 * @param memoryBudgetBytes the memory one job may plan against, heap and native together (MEMORY:
 *     {@code 6g}, {@code 512m}, bytes; default: the container's cgroup limit minus a quarter,
 *     capped by the JVM's max heap; see {@link WorkerMemory}); every job's {@code StageContext}
 *     carries it
 * @param replication replicas and min in-sync replicas of the topics the worker creates
 *     (REPLICATION_FACTOR, MIN_INSYNC_REPLICAS; -1, the default, for the broker's defaults)
 */
public record WorkerConfig(
    String bootstrap,
    String registryUrl,
    Path storeRoot,
    List<Path> readRoots,
    String workerId,
    String httpHost,
    int httpPort,
    Duration heartbeat,
    Duration progressInterval,
    Duration shutdownGrace,
    long memoryBudgetBytes,
    TopicReplication replication) {

  static final ConfigParameter<String> BOOTSTRAP =
      ConfigParameter.required("BOOTSTRAP", "Kafka bootstrap servers");
  static final ConfigParameter<String> REGISTRY =
      ConfigParameter.required("REGISTRY", "Confluent-compatible schema registry base URL");
  static final ConfigParameter<Path> STORE =
      ConfigParameter.of("STORE", "run/store", Path::of, "root of the file artefact store");
  static final ConfigParameter<List<Path>> READ_ROOTS =
      ConfigParameter.of(
          "READ_ROOTS",
          "",
          WorkerConfig::paths,
          "extra directories artefact URIs may point into, read-only (':'-separated)");
  static final ConfigParameter<String> ID =
      ConfigParameter.of(
          "ID",
          "",
          v -> v.isBlank() ? "worker-" + ProcessHandle.current().pid() : v,
          "identity in events and client ids; blank: worker-PID");
  static final ConfigParameter<String> HTTP_HOST =
      ConfigParameter.text(
          "HTTP_HOST",
          "127.0.0.1",
          "address the health and metrics endpoint binds (0.0.0.0 in a pod)");
  static final ConfigParameter<Integer> HTTP_PORT =
      ConfigParameter.integer(
          "HTTP_PORT", 0, "health and metrics port; 0 picks a free one, -1 disables HTTP");
  static final ConfigParameter<Duration> HEARTBEAT =
      ConfigParameter.duration(
          "HEARTBEAT", "5s", "re-send the last progress when a stage has been quiet this long");
  static final ConfigParameter<Duration> PROGRESS_INTERVAL =
      ConfigParameter.duration(
          "PROGRESS_INTERVAL", "200ms", "at most one progress event per this interval");
  static final ConfigParameter<Duration> SHUTDOWN_GRACE =
      ConfigParameter.duration(
          "SHUTDOWN_GRACE",
          "30s",
          "on SIGTERM, how long a running job may take to finish before it is abandoned");
  static final ConfigParameter<WorkerMemory> MEMORY =
      ConfigParameter.of(
          "MEMORY",
          "",
          WorkerMemory::resolve,
          "memory one job may plan against, heap and native (6g, 512m, 8Gi, bytes); blank: the container limit minus a"
              + " quarter, capped by the JVM's max heap");

  /** Every setting of a worker host, in one table. */
  public static final List<ConfigParameter<?>> PARAMETERS =
      List.of(
          BOOTSTRAP,
          REGISTRY,
          STORE,
          READ_ROOTS,
          ID,
          HTTP_HOST,
          HTTP_PORT,
          HEARTBEAT,
          PROGRESS_INTERVAL,
          SHUTDOWN_GRACE,
          MEMORY,
          TopicReplication.REPLICATION_FACTOR,
          TopicReplication.MIN_INSYNC_REPLICAS);

  public WorkerConfig {
    if (bootstrap == null || bootstrap.isBlank()) {
      throw new IllegalArgumentException("bootstrap servers are required");
    }
    if (registryUrl == null || registryUrl.isBlank()) {
      throw new IllegalArgumentException("schema registry URL is required");
    }
    if (heartbeat.isNegative() || heartbeat.isZero()) {
      throw new IllegalArgumentException("heartbeat must be positive");
    }
    if (memoryBudgetBytes <= 0) {
      throw new IllegalArgumentException(
          "memory budget must be positive, got " + memoryBudgetBytes);
    }
    readRoots = List.copyOf(readRoots);
    Objects.requireNonNull(replication, "replication");
  }

  /** Topics replicated as the broker's defaults say. */
  public WorkerConfig(
      String bootstrap,
      String registryUrl,
      Path storeRoot,
      List<Path> readRoots,
      String workerId,
      String httpHost,
      int httpPort,
      Duration heartbeat,
      Duration progressInterval,
      Duration shutdownGrace,
      long memoryBudgetBytes) {
    this(
        bootstrap,
        registryUrl,
        storeRoot,
        readRoots,
        workerId,
        httpHost,
        httpPort,
        heartbeat,
        progressInterval,
        shutdownGrace,
        memoryBudgetBytes,
        TopicReplication.BROKER_DEFAULT);
  }

  /**
   * A config whose memory budget is the default of this process ({@link
   * WorkerMemory#resolve(String)}) and whose topics are replicated as the broker's defaults say.
   */
  public WorkerConfig(
      String bootstrap,
      String registryUrl,
      Path storeRoot,
      List<Path> readRoots,
      String workerId,
      String httpHost,
      int httpPort,
      Duration heartbeat,
      Duration progressInterval,
      Duration shutdownGrace) {
    this(
        bootstrap,
        registryUrl,
        storeRoot,
        readRoots,
        workerId,
        httpHost,
        httpPort,
        heartbeat,
        progressInterval,
        shutdownGrace,
        MEMORY.defaultValue().bytes());
  }

  public static WorkerConfig of(String bootstrap, String registryUrl, Path storeRoot) {
    return new WorkerConfig(
        bootstrap,
        registryUrl,
        storeRoot,
        READ_ROOTS.defaultValue(),
        ID.defaultValue(),
        HTTP_HOST.defaultValue(),
        -1,
        HEARTBEAT.defaultValue(),
        PROGRESS_INTERVAL.defaultValue(),
        SHUTDOWN_GRACE.defaultValue());
  }

  public static WorkerConfig from(Settings s) {
    return from(s, MEMORY.read(s));
  }

  /**
   * The config of {@code s} with a memory budget already resolved (so the caller can print where it
   * came from).
   */
  public static WorkerConfig from(Settings s, WorkerMemory memory) {
    return new WorkerConfig(
        BOOTSTRAP.read(s),
        REGISTRY.read(s),
        STORE.read(s),
        READ_ROOTS.read(s),
        ID.read(s),
        HTTP_HOST.read(s),
        HTTP_PORT.read(s),
        HEARTBEAT.read(s),
        PROGRESS_INTERVAL.read(s),
        SHUTDOWN_GRACE.read(s),
        memory.bytes(),
        TopicReplication.from(s));
  }

  /** {@code ':'}-separated directories; blank for none. */
  static List<Path> paths(String text) {
    return text.isBlank() ? List.of() : Arrays.stream(text.split(":")).map(Path::of).toList();
  }

  public static WorkerConfig fromEnv(Map<String, String> env) {
    return from(new Settings("worker", env));
  }

  public WorkerConfig withWorkerId(String id) {
    return new WorkerConfig(
        bootstrap,
        registryUrl,
        storeRoot,
        readRoots,
        id,
        httpHost,
        httpPort,
        heartbeat,
        progressInterval,
        shutdownGrace,
        memoryBudgetBytes,
        replication);
  }

  public WorkerConfig withHttpPort(int port) {
    return new WorkerConfig(
        bootstrap,
        registryUrl,
        storeRoot,
        readRoots,
        workerId,
        httpHost,
        port,
        heartbeat,
        progressInterval,
        shutdownGrace,
        memoryBudgetBytes,
        replication);
  }

  public WorkerConfig withReplication(TopicReplication value) {
    return new WorkerConfig(
        bootstrap,
        registryUrl,
        storeRoot,
        readRoots,
        workerId,
        httpHost,
        httpPort,
        heartbeat,
        progressInterval,
        shutdownGrace,
        memoryBudgetBytes,
        value);
  }

  /**
   * The cluster and registry this worker talks to, with its topic replication; its registry calls
   * wait out a registry restart ({@link SchemaRegistryClient#OUTAGE_RETRY_BUDGET}) rather than fail
   * a job.
   */
  public KafkaSettings kafka() {
    return KafkaSettings.of(bootstrap, registryUrl, replication)
        .withRegistryRetry(SchemaRegistryClient.OUTAGE_RETRY_BUDGET);
  }

  public WorkerConfig withTiming(Duration heartbeat, Duration shutdownGrace) {
    return new WorkerConfig(
        bootstrap,
        registryUrl,
        storeRoot,
        readRoots,
        workerId,
        httpHost,
        httpPort,
        heartbeat,
        progressInterval,
        shutdownGrace,
        memoryBudgetBytes,
        replication);
  }

  /** The same config with a memory budget of {@code bytes} for every job. */
  public WorkerConfig withMemoryBudget(long bytes) {
    return new WorkerConfig(
        bootstrap,
        registryUrl,
        storeRoot,
        readRoots,
        workerId,
        httpHost,
        httpPort,
        heartbeat,
        progressInterval,
        shutdownGrace,
        bytes,
        replication);
  }
}
