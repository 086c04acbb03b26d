package io.distillery.serving;

import io.distillery.runtime.config.Settings;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Arrays;
import java.util.List;
import java.util.Map;

/**
 * Settings of a serving node. From the environment: {@code DISTILLERY_SERVING_<KEY>} or {@code DISTILLERY_<KEY>}.
 *
 * @param bootstrap Kafka bootstrap servers (BOOTSTRAP); null only for a local node started on a checkpoint (bench)
 * @param registryUrl Confluent-compatible schema registry URL (REGISTRY)
 * @param host address the HTTP server binds (HOST; 0.0.0.0 in a pod)
 * @param port HTTP port; 0 picks a free one (PORT)
 * @param publicUrl base URL announced in DeploymentActive; blank derives it from host and port (PUBLIC_URL)
 * @param nodeId identity in events and client ids (NODE_ID)
 * @param deployments deployment ids this node hosts, {@code *} for any (DEPLOYMENTS, comma list)
 * @param confidenceThreshold mean token log-probability below which an answer escalates to the teacher
 *     (CONFIDENCE_THRESHOLD; {@code -Infinity} turns escalation off)
 * @param maxPromptChars longest accepted prompt in characters (MAX_PROMPT_CHARS)
 * @param maxTokensLimit largest accepted {@code max_tokens} (MAX_TOKENS_LIMIT)
 * @param defaultMaxTokens {@code max_tokens} when a request gives none (DEFAULT_MAX_TOKENS)
 * @param workers generation threads (WORKERS)
 * @param queueSize requests waiting for a generation thread before new ones get 503 (QUEUE_SIZE)
 * @param requestTimeout a request still generating after this long ends with 504, counted as an error; an
 *     escalation to the teacher must finish within it too (REQUEST_TIMEOUT)
 * @param trafficIntervalMs how often ServingTraffic counts are published (TRAFFIC_INTERVAL_MS)
 * @param eventBuffer misfire/traffic events held in memory while Kafka is slow or down; more are dropped and counted
 *     (EVENT_BUFFER)
 * @param storeRoot root of the file artefact store; artefact URIs must lie inside it or a read root (STORE)
 * @param readRoots extra directories artefact URIs may point into, read-only (READ_ROOTS, ':'-separated)
 */
public record ServingConfig(String bootstrap, String registryUrl, String host, int port, String publicUrl,
    String nodeId, List<String> deployments, double confidenceThreshold, int maxPromptChars, int maxTokensLimit,
    int defaultMaxTokens, int workers, int queueSize, Duration requestTimeout, int trafficIntervalMs,
    int eventBuffer, Path storeRoot, List<Path> readRoots) {

  public static final String ANY = "*";

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
      throw new IllegalArgumentException("setting DEPLOYMENTS must list deployment ids or '*', got " + deployments);
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
      throw new IllegalArgumentException("setting DEFAULT_MAX_TOKENS must be in [1, MAX_TOKENS_LIMIT=" + maxTokensLimit
          + "], got " + defaultMaxTokens);
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

  /** Defaults for a node on {@code bootstrap} (null for a local node without Kafka). */
  public static ServingConfig of(String bootstrap, String registryUrl, Path storeRoot) {
    return new ServingConfig(bootstrap, registryUrl, "127.0.0.1", 0, "", "serving-" + ProcessHandle.current().pid(),
        List.of(ANY), -1.0, 4096, 256, 16, Math.max(2, Runtime.getRuntime().availableProcessors()), 64,
        Duration.ofSeconds(30), 5000, 1024, storeRoot, List.of());
  }

  public static ServingConfig from(Settings s) {
    String roots = s.string("READ_ROOTS", "");
    String threshold = s.string("CONFIDENCE_THRESHOLD", "-1.0");
    double parsedThreshold;
    try {
      parsedThreshold = Double.parseDouble(threshold.trim());
    } catch (NumberFormatException e) {
      throw new IllegalArgumentException("setting CONFIDENCE_THRESHOLD='" + threshold + "' is not a number");
    }
    return new ServingConfig(
        s.required("BOOTSTRAP"),
        s.required("REGISTRY"),
        s.string("HOST", "127.0.0.1"),
        s.integer("PORT", 8090),
        s.string("PUBLIC_URL", ""),
        s.string("NODE_ID", "serving-" + ProcessHandle.current().pid()),
        Arrays.stream(s.string("DEPLOYMENTS", ANY).split(",")).map(String::trim).toList(),
        parsedThreshold,
        s.integer("MAX_PROMPT_CHARS", 4096),
        s.integer("MAX_TOKENS_LIMIT", 256),
        s.integer("DEFAULT_MAX_TOKENS", 16),
        s.integer("WORKERS", Math.max(2, Runtime.getRuntime().availableProcessors())),
        s.integer("QUEUE_SIZE", 64),
        s.duration("REQUEST_TIMEOUT", Duration.ofSeconds(30)),
        s.integer("TRAFFIC_INTERVAL_MS", 5000),
        s.integer("EVENT_BUFFER", 1024),
        Path.of(s.string("STORE", "run/store")),
        roots.isBlank() ? List.of() : Arrays.stream(roots.split(":")).map(Path::of).toList());
  }

  public static ServingConfig fromEnv(Map<String, String> env) {
    return from(new Settings("serving", env));
  }

  /** Whether this node hosts {@code deploymentId}. */
  public boolean hosts(String deploymentId) {
    return deployments.contains(ANY) || deployments.contains(deploymentId);
  }

  public ServingConfig withNodeId(String id) {
    return new ServingConfig(bootstrap, registryUrl, host, port, publicUrl, id, deployments, confidenceThreshold,
        maxPromptChars, maxTokensLimit, defaultMaxTokens, workers, queueSize, requestTimeout, trafficIntervalMs,
        eventBuffer, storeRoot, readRoots);
  }

  public ServingConfig withDeployments(List<String> ids) {
    return new ServingConfig(bootstrap, registryUrl, host, port, publicUrl, nodeId, ids, confidenceThreshold,
        maxPromptChars, maxTokensLimit, defaultMaxTokens, workers, queueSize, requestTimeout, trafficIntervalMs,
        eventBuffer, storeRoot, readRoots);
  }

  public ServingConfig withConfidenceThreshold(double threshold) {
    return new ServingConfig(bootstrap, registryUrl, host, port, publicUrl, nodeId, deployments, threshold,
        maxPromptChars, maxTokensLimit, defaultMaxTokens, workers, queueSize, requestTimeout, trafficIntervalMs,
        eventBuffer, storeRoot, readRoots);
  }

  public ServingConfig withLimits(int maxPromptChars, int maxTokensLimit) {
    return new ServingConfig(bootstrap, registryUrl, host, port, publicUrl, nodeId, deployments, confidenceThreshold,
        maxPromptChars, maxTokensLimit, Math.min(defaultMaxTokens, maxTokensLimit), workers, queueSize,
        requestTimeout, trafficIntervalMs, eventBuffer, storeRoot, readRoots);
  }

  public ServingConfig withCapacity(int workers, int queueSize, int eventBuffer) {
    return new ServingConfig(bootstrap, registryUrl, host, port, publicUrl, nodeId, deployments, confidenceThreshold,
        maxPromptChars, maxTokensLimit, defaultMaxTokens, workers, queueSize, requestTimeout, trafficIntervalMs,
        eventBuffer, storeRoot, readRoots);
  }

  public ServingConfig withTiming(Duration requestTimeout, int trafficIntervalMs) {
    return new ServingConfig(bootstrap, registryUrl, host, port, publicUrl, nodeId, deployments, confidenceThreshold,
        maxPromptChars, maxTokensLimit, defaultMaxTokens, workers, queueSize, requestTimeout, trafficIntervalMs,
        eventBuffer, storeRoot, readRoots);
  }

  public ServingConfig withPort(int port) {
    return new ServingConfig(bootstrap, registryUrl, host, port, publicUrl, nodeId, deployments, confidenceThreshold,
        maxPromptChars, maxTokensLimit, defaultMaxTokens, workers, queueSize, requestTimeout, trafficIntervalMs,
        eventBuffer, storeRoot, readRoots);
  }
}
