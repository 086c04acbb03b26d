package io.distillery.serving;

import io.distillery.runtime.config.ConfigParameter;
import io.distillery.runtime.config.Settings;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Arrays;
import java.util.List;
import java.util.Map;

/**
 * Settings of a serving node. From the environment: {@code DISTILLERY_SERVING_<KEY>} or {@code
 * DISTILLERY_<KEY>}.
 *
 * @param bootstrap Kafka bootstrap servers (BOOTSTRAP); null only for a local node started on a
 *     checkpoint (bench)
 * @param registryUrl Confluent-compatible schema registry URL (REGISTRY)
 * @param host address the HTTP server binds (HOST; 0.0.0.0 in a pod)
 * @param port HTTP port; 0 picks a free one (PORT)
 * @param publicUrl base URL announced in DeploymentActive; blank derives it from host and port
 *     (PUBLIC_URL)
 * @param nodeId identity in events and client ids (NODE_ID; blank, the default, for {@code
 *     serving-<pid>})
 * @param deployments deployment ids this node hosts, {@code *} for any (DEPLOYMENTS, comma list)
 * @param confidenceThreshold mean token log-probability below which an answer escalates to the
 *     teacher (CONFIDENCE_THRESHOLD; {@code -Infinity} turns escalation off)
 * @param maxPromptChars longest accepted prompt in characters (MAX_PROMPT_CHARS)
 * @param maxTokensLimit largest accepted {@code max_tokens} (MAX_TOKENS_LIMIT)
 * @param defaultMaxTokens {@code max_tokens} when a request gives none (DEFAULT_MAX_TOKENS)
 * @param workers generation threads (WORKERS; blank, the default, for the number of cores, at least
 *     2)
 * @param queueSize requests waiting for a generation thread before new ones get 503 (QUEUE_SIZE)
 * @param requestTimeout a request still generating after this long ends with 504, counted as an
 *     error; an escalation to the teacher must finish within it too (REQUEST_TIMEOUT)
 * @param trafficIntervalMs how often ServingTraffic counts are published (TRAFFIC_INTERVAL_MS)
 * @param eventBuffer misfire/traffic events held in memory while Kafka is slow or down; more are
 *     dropped and counted (EVENT_BUFFER)
 * @param storeRoot root of the file artefact store; artefact URIs must lie inside it or a read root
 *     (STORE)
 * @param readRoots extra directories artefact URIs may point into, read-only (READ_ROOTS,
 *     ':'-separated)
 */
public record ServingConfig(
    String bootstrap,
    String registryUrl,
    String host,
    int port,
    String publicUrl,
    String nodeId,
    List<String> deployments,
    double confidenceThreshold,
    int maxPromptChars,
    int maxTokensLimit,
    int defaultMaxTokens,
    int workers,
    int queueSize,
    Duration requestTimeout,
    int trafficIntervalMs,
    int eventBuffer,
    Path storeRoot,
    List<Path> readRoots) {

  public static final String ANY = "*";

  static final ConfigParameter<String> BOOTSTRAP =
      ConfigParameter.required("BOOTSTRAP", "Kafka bootstrap servers");
  static final ConfigParameter<String> REGISTRY =
      ConfigParameter.required("REGISTRY", "Confluent-compatible schema registry URL");
  static final ConfigParameter<String> HOST =
      ConfigParameter.text("HOST", "127.0.0.1", "address the HTTP server binds (0.0.0.0 in a pod)");
  static final ConfigParameter<Integer> PORT =
      ConfigParameter.integer("PORT", 8090, "HTTP port; 0 picks a free one");
  static final ConfigParameter<String> PUBLIC_URL =
      ConfigParameter.text(
          "PUBLIC_URL",
          "",
          "base URL announced in DeploymentActive; blank derives it from host and port");
  static final ConfigParameter<String> NODE_ID =
      ConfigParameter.of(
          "NODE_ID",
          "",
          v -> v.isBlank() ? "serving-" + ProcessHandle.current().pid() : v,
          "identity in events and client ids; blank: serving-PID");
  static final ConfigParameter<List<String>> DEPLOYMENTS =
      ConfigParameter.of(
          "DEPLOYMENTS",
          ANY,
          v -> Arrays.stream(v.split(",")).map(String::trim).toList(),
          "deployment ids this node hosts, * for any (comma list)");
  static final ConfigParameter<Double> CONFIDENCE_THRESHOLD =
      ConfigParameter.decimal(
          "CONFIDENCE_THRESHOLD",
          -1.0,
          "mean token log-probability below which an answer escalates to the teacher; -Infinity turns escalation off");
  static final ConfigParameter<Integer> MAX_PROMPT_CHARS =
      ConfigParameter.integer("MAX_PROMPT_CHARS", 4096, "longest accepted prompt in characters");
  static final ConfigParameter<Integer> MAX_TOKENS_LIMIT =
      ConfigParameter.integer("MAX_TOKENS_LIMIT", 256, "largest accepted max_tokens");
  static final ConfigParameter<Integer> DEFAULT_MAX_TOKENS =
      ConfigParameter.integer("DEFAULT_MAX_TOKENS", 16, "max_tokens when a request gives none");
  static final ConfigParameter<Integer> WORKERS =
      ConfigParameter.of(
          "WORKERS",
          "",
          v ->
              v.isBlank()
                  ? Math.max(2, Runtime.getRuntime().availableProcessors())
                  : Integer.parseInt(v.trim()),
          "generation threads; blank: the number of cores, at least 2");
  static final ConfigParameter<Integer> QUEUE_SIZE =
      ConfigParameter.integer(
          "QUEUE_SIZE", 64, "requests waiting for a generation thread before new ones get 503");
  static final ConfigParameter<Duration> REQUEST_TIMEOUT =
      ConfigParameter.duration(
          "REQUEST_TIMEOUT",
          "30s",
          "a request still generating after this long ends with 504; an escalation must finish within it too");
  static final ConfigParameter<Integer> TRAFFIC_INTERVAL_MS =
      ConfigParameter.integer(
          "TRAFFIC_INTERVAL_MS",
          5000,
          "how often ServingTraffic counts are published, in milliseconds");
  static final ConfigParameter<Integer> EVENT_BUFFER =
      ConfigParameter.integer(
          "EVENT_BUFFER",
          1024,
          "misfire/traffic events held in memory while Kafka is slow or down; more are dropped and counted");
  static final ConfigParameter<Path> STORE =
      ConfigParameter.of(
          "STORE",
          "run/store",
          Path::of,
          "root of the file artefact store; artefact URIs must lie inside it or a read root");
  static final ConfigParameter<List<Path>> READ_ROOTS =
      ConfigParameter.of(
          "READ_ROOTS",
          "",
          v -> v.isBlank() ? List.of() : Arrays.stream(v.split(":")).map(Path::of).toList(),
          "extra directories artefact URIs may point into, read-only (':'-separated)");

  /** Every setting of a serving node, in one table. */
  public static final List<ConfigParameter<?>> PARAMETERS =
      List.of(
          BOOTSTRAP,
          REGISTRY,
          HOST,
          PORT,
          PUBLIC_URL,
          NODE_ID,
          DEPLOYMENTS,
          CONFIDENCE_THRESHOLD,
          MAX_PROMPT_CHARS,
          MAX_TOKENS_LIMIT,
          DEFAULT_MAX_TOKENS,
          WORKERS,
          QUEUE_SIZE,
          REQUEST_TIMEOUT,
          TRAFFIC_INTERVAL_MS,
          EVENT_BUFFER,
          STORE,
          READ_ROOTS);

  public ServingConfig {
    if (bootstrap != null && (registryUrl == null || registryUrl.isBlank())) {
      throw new IllegalArgumentException("setting REGISTRY is required when BOOTSTRAP is set");
    }
    if (port < 0 || port > 65535) {
      throw new IllegalArgumentException("setting PORT must be in [0, 65535], got " + port);
    }
    if (nodeId == null || nodeId.isBlank()) {
      throw new IllegalArgumentException("setting NODE_ID must not be blank");
    }
    deployments = List.copyOf(deployments);
    if (deployments.isEmpty() || deployments.stream().anyMatch(String::isBlank)) {
      throw new IllegalArgumentException(
          "setting DEPLOYMENTS must list deployment ids or '*', got " + deployments);
    }
    if (Double.isNaN(confidenceThreshold)) {
      throw new IllegalArgumentException("setting CONFIDENCE_THRESHOLD must be a number");
    }
    requirePositive("MAX_PROMPT_CHARS", maxPromptChars);
    requirePositive("MAX_TOKENS_LIMIT", maxTokensLimit);
    requirePositive("WORKERS", workers);
    requirePositive("QUEUE_SIZE", queueSize);
    requirePositive("TRAFFIC_INTERVAL_MS", trafficIntervalMs);
    requirePositive("EVENT_BUFFER", eventBuffer);
    if (defaultMaxTokens < 1 || defaultMaxTokens > maxTokensLimit) {
      throw new IllegalArgumentException(
          "setting DEFAULT_MAX_TOKENS must be in [1, MAX_TOKENS_LIMIT="
              + maxTokensLimit
              + "], got "
              + defaultMaxTokens);
    }
    if (requestTimeout.isZero() || requestTimeout.isNegative()) {
      throw new IllegalArgumentException("setting REQUEST_TIMEOUT must be positive");
    }
    readRoots = List.copyOf(readRoots);
  }

  private static void requirePositive(String key, int value) {
    if (value < 1) {
      throw new IllegalArgumentException("setting " + key + " must be at least 1, got " + value);
    }
  }

  /**
   * Defaults for a node on {@code bootstrap} (null for a local node without Kafka), on a free port.
   */
  public static ServingConfig of(String bootstrap, String registryUrl, Path storeRoot) {
    return new ServingConfig(
        bootstrap,
        registryUrl,
        HOST.defaultValue(),
        0,
        PUBLIC_URL.defaultValue(),
        NODE_ID.defaultValue(),
        DEPLOYMENTS.defaultValue(),
        CONFIDENCE_THRESHOLD.defaultValue(),
        MAX_PROMPT_CHARS.defaultValue(),
        MAX_TOKENS_LIMIT.defaultValue(),
        DEFAULT_MAX_TOKENS.defaultValue(),
        WORKERS.defaultValue(),
        QUEUE_SIZE.defaultValue(),
        REQUEST_TIMEOUT.defaultValue(),
        TRAFFIC_INTERVAL_MS.defaultValue(),
        EVENT_BUFFER.defaultValue(),
        storeRoot,
        READ_ROOTS.defaultValue());
  }

  public static ServingConfig from(Settings s) {
    return new ServingConfig(
        BOOTSTRAP.read(s),
        REGISTRY.read(s),
        HOST.read(s),
        PORT.read(s),
        PUBLIC_URL.read(s),
        NODE_ID.read(s),
        DEPLOYMENTS.read(s),
        CONFIDENCE_THRESHOLD.read(s),
        MAX_PROMPT_CHARS.read(s),
        MAX_TOKENS_LIMIT.read(s),
        DEFAULT_MAX_TOKENS.read(s),
        WORKERS.read(s),
        QUEUE_SIZE.read(s),
        REQUEST_TIMEOUT.read(s),
        TRAFFIC_INTERVAL_MS.read(s),
        EVENT_BUFFER.read(s),
        STORE.read(s),
        READ_ROOTS.read(s));
  }

  public static ServingConfig fromEnv(Map<String, String> env) {
    return from(new Settings("serving", env));
  }

  /** Whether this node hosts {@code deploymentId}. */
  public boolean hosts(String deploymentId) {
    return deployments.contains(ANY) || deployments.contains(deploymentId);
  }

  public ServingConfig withNodeId(String id) {
    return new ServingConfig(
        bootstrap,
        registryUrl,
        host,
        port,
        publicUrl,
        id,
        deployments,
        confidenceThreshold,
        maxPromptChars,
        maxTokensLimit,
        defaultMaxTokens,
        workers,
        queueSize,
        requestTimeout,
        trafficIntervalMs,
        eventBuffer,
        storeRoot,
        readRoots);
  }

  public ServingConfig withDeployments(List<String> ids) {
    return new ServingConfig(
        bootstrap,
        registryUrl,
        host,
        port,
        publicUrl,
        nodeId,
        ids,
        confidenceThreshold,
        maxPromptChars,
        maxTokensLimit,
        defaultMaxTokens,
        workers,
        queueSize,
        requestTimeout,
        trafficIntervalMs,
        eventBuffer,
        storeRoot,
        readRoots);
  }

  public ServingConfig withConfidenceThreshold(double threshold) {
    return new ServingConfig(
        bootstrap,
        registryUrl,
        host,
        port,
        publicUrl,
        nodeId,
        deployments,
        threshold,
        maxPromptChars,
        maxTokensLimit,
        defaultMaxTokens,
        workers,
        queueSize,
        requestTimeout,
        trafficIntervalMs,
        eventBuffer,
        storeRoot,
        readRoots);
  }

  public ServingConfig withLimits(int maxPromptChars, int maxTokensLimit) {
    return new ServingConfig(
        bootstrap,
        registryUrl,
        host,
        port,
        publicUrl,
        nodeId,
        deployments,
        confidenceThreshold,
        maxPromptChars,
        maxTokensLimit,
        Math.min(defaultMaxTokens, maxTokensLimit),
        workers,
        queueSize,
        requestTimeout,
        trafficIntervalMs,
        eventBuffer,
        storeRoot,
        readRoots);
  }

  public ServingConfig withCapacity(int workers, int queueSize, int eventBuffer) {
    return new ServingConfig(
        bootstrap,
        registryUrl,
        host,
        port,
        publicUrl,
        nodeId,
        deployments,
        confidenceThreshold,
        maxPromptChars,
        maxTokensLimit,
        defaultMaxTokens,
        workers,
        queueSize,
        requestTimeout,
        trafficIntervalMs,
        eventBuffer,
        storeRoot,
        readRoots);
  }

  public ServingConfig withTiming(Duration requestTimeout, int trafficIntervalMs) {
    return new ServingConfig(
        bootstrap,
        registryUrl,
        host,
        port,
        publicUrl,
        nodeId,
        deployments,
        confidenceThreshold,
        maxPromptChars,
        maxTokensLimit,
        defaultMaxTokens,
        workers,
        queueSize,
        requestTimeout,
        trafficIntervalMs,
        eventBuffer,
        storeRoot,
        readRoots);
  }

  public ServingConfig withPort(int port) {
    return new ServingConfig(
        bootstrap,
        registryUrl,
        host,
        port,
        publicUrl,
        nodeId,
        deployments,
        confidenceThreshold,
        maxPromptChars,
        maxTokensLimit,
        defaultMaxTokens,
        workers,
        queueSize,
        requestTimeout,
        trafficIntervalMs,
        eventBuffer,
        storeRoot,
        readRoots);
  }
}
