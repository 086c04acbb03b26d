package io.distillery.runtime.worker;

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
 * Settings of a worker host. From the environment: {@code DISTILLERY_WORKER_<KEY>} or {@code DISTILLERY_<KEY>}.
 *
 * @param bootstrap Kafka bootstrap servers (BOOTSTRAP)
 * @param registryUrl Confluent-compatible schema registry base URL (REGISTRY)
 * @param storeRoot root of the file artefact store (STORE)
 * @param readRoots extra directories artefact URIs may point into, read-only (READ_ROOTS, ':'-separated)
 * @param workerId identity in events and client ids (ID)
 * @param httpHost address the health and metrics endpoint binds (HTTP_HOST; 0.0.0.0 in a pod)
 * @param httpPort health and metrics port; 0 picks a free one, -1 disables HTTP (HTTP_PORT)
 * @param heartbeat re-send the last progress when a stage has been quiet this long (HEARTBEAT)
 * @param progressInterval at most one progress event per this interval (PROGRESS_INTERVAL)
 * @param shutdownGrace on SIGTERM, how long a running job may take to finish before it is abandoned (SHUTDOWN_GRACE)
 * @param memoryBudgetBytes the memory one job may plan against, heap and native together (MEMORY: {@code 6g},
 *     {@code 512m}, bytes; default: the container's cgroup limit minus a quarter, capped by the JVM's max heap; see
 *     {@link WorkerMemory}); every job's {@code StageContext} carries it
 * @param replication replicas and min in-sync replicas of the topics the worker creates (REPLICATION_FACTOR,
 *     MIN_INSYNC_REPLICAS; -1, the default, for the broker's defaults)
 */
public record WorkerConfig(
    String bootstrap, String registryUrl, Path storeRoot, List<Path> readRoots, String workerId, String httpHost, int httpPort,
    Duration heartbeat, Duration progressInterval, Duration shutdownGrace, long memoryBudgetBytes,
    TopicReplication replication) {

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
      throw new IllegalArgumentException("memory budget must be positive, got " + memoryBudgetBytes);
    }
    readRoots = List.copyOf(readRoots);
    Objects.requireNonNull(replication, "replication");
  }

  /** Topics replicated as the broker's defaults say. */
  public WorkerConfig(String bootstrap, String registryUrl, Path storeRoot, List<Path> readRoots, String workerId,
      String httpHost, int httpPort, Duration heartbeat, Duration progressInterval, Duration shutdownGrace,
      long memoryBudgetBytes) {
    this(bootstrap, registryUrl, storeRoot, readRoots, workerId, httpHost, httpPort, heartbeat, progressInterval,
        shutdownGrace, memoryBudgetBytes, TopicReplication.BROKER_DEFAULT);
  }

  /**
   * A config whose memory budget is the default of this process ({@link WorkerMemory#resolve(String)}) and whose
   * topics are replicated as the broker's defaults say.
   */
  public WorkerConfig(String bootstrap, String registryUrl, Path storeRoot, List<Path> readRoots, String workerId,
      String httpHost, int httpPort, Duration heartbeat, Duration progressInterval, Duration shutdownGrace) {
    this(bootstrap, registryUrl, storeRoot, readRoots, workerId, httpHost, httpPort, heartbeat, progressInterval,
        shutdownGrace, WorkerMemory.resolve(null).bytes());
  }

  public static WorkerConfig of(String bootstrap, String registryUrl, Path storeRoot) {
    return new WorkerConfig(bootstrap, registryUrl, storeRoot, List.of(), "worker-" + ProcessHandle.current().pid(),
        "127.0.0.1", -1, Duration.ofSeconds(5), Duration.ofMillis(200), Duration.ofSeconds(30));
  }

  public static WorkerConfig from(Settings s) {
    return from(s, WorkerMemory.resolve(s.string("MEMORY", "")));
  }

  /** The config of {@code s} with a memory budget already resolved (so the caller can print where it came from). */
  public static WorkerConfig from(Settings s, WorkerMemory memory) {
    String roots = s.string("READ_ROOTS", "");
    return new WorkerConfig(
        s.required("BOOTSTRAP"),
        s.required("REGISTRY"),
        Path.of(s.string("STORE", "run/store")),
        roots.isBlank() ? List.of() : Arrays.stream(roots.split(":")).map(Path::of).toList(),
        s.string("ID", "worker-" + ProcessHandle.current().pid()),
        s.string("HTTP_HOST", "127.0.0.1"),
        s.integer("HTTP_PORT", 0),
        s.duration("HEARTBEAT", Duration.ofSeconds(5)),
        s.duration("PROGRESS_INTERVAL", Duration.ofMillis(200)),
        s.duration("SHUTDOWN_GRACE", Duration.ofSeconds(30)),
        memory.bytes(),
        TopicReplication.from(s));
  }

  public static WorkerConfig fromEnv(Map<String, String> env) {
    return from(new Settings("worker", env));
  }

  public WorkerConfig withWorkerId(String id) {
    return new WorkerConfig(bootstrap, registryUrl, storeRoot, readRoots, id, httpHost, httpPort, heartbeat, progressInterval,
        shutdownGrace, memoryBudgetBytes, replication);
  }

  public WorkerConfig withHttpPort(int port) {
    return new WorkerConfig(bootstrap, registryUrl, storeRoot, readRoots, workerId, httpHost, port, heartbeat, progressInterval,
        shutdownGrace, memoryBudgetBytes, replication);
  }

  public WorkerConfig withReplication(TopicReplication value) {
    return new WorkerConfig(bootstrap, registryUrl, storeRoot, readRoots, workerId, httpHost, httpPort, heartbeat,
        progressInterval, shutdownGrace, memoryBudgetBytes, value);
  }

  /**
   * The cluster and registry this worker talks to, with its topic replication; its registry calls wait out a registry
   * restart ({@link SchemaRegistryClient#OUTAGE_RETRY_BUDGET}) rather than fail a job.
   */
  public KafkaSettings kafka() {
    return KafkaSettings.of(bootstrap, registryUrl, replication)
        .withRegistryRetry(SchemaRegistryClient.OUTAGE_RETRY_BUDGET);
  }

  public WorkerConfig withTiming(Duration heartbeat, Duration shutdownGrace) {
    return new WorkerConfig(bootstrap, registryUrl, storeRoot, readRoots, workerId, httpHost, httpPort, heartbeat,
        progressInterval, shutdownGrace, memoryBudgetBytes, replication);
  }

  /** The same config with a memory budget of {@code bytes} for every job. */
  public WorkerConfig withMemoryBudget(long bytes) {
    return new WorkerConfig(bootstrap, registryUrl, storeRoot, readRoots, workerId, httpHost, httpPort, heartbeat,
        progressInterval, shutdownGrace, bytes, replication);
  }
}
