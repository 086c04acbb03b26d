package io.distillery.planner;

import io.distillery.runtime.config.Settings;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Map;

/**
 * Settings of the planner. From the environment: {@code DISTILLERY_PLANNER_<KEY>} or {@code DISTILLERY_<KEY>}.
 *
 * @param bootstrap Kafka bootstrap servers (BOOTSTRAP)
 * @param registryUrl Confluent-compatible schema registry URL (REGISTRY)
 * @param applicationId Kafka Streams application id; its state and changelogs are keyed by it (APPLICATION_ID)
 * @param stateDir where the state stores live (STATE_DIR)
 * @param tick how often the clock checks timeouts and due retries (TICK)
 * @param retryBackoff first retry delay, doubling per attempt (RETRY_BACKOFF)
 * @param maxRetryBackoff cap of the retry delay (MAX_RETRY_BACKOFF)
 * @param threads stream threads; more than the partition count of the inputs idles (THREADS)
 * @param maxWaitingJobs how many dispatched jobs may wait for a worker before new runs are queued instead of started
 *     (MAX_WAITING_JOBS; 0, the default, for no limit). Stages of runs already started are never held back. Meant for a
 *     fixed pool of workers, as in {@code distillery up}: it keeps the jobs topics short, which is exactly the signal a
 *     lag-based autoscaler (KEDA in k8s/) scales workers on, so leave it at 0 where workers autoscale. A job whose
 *     stage has no live worker holds its slot until its timeout fails it.
 */
public record PlannerConfig(String bootstrap, String registryUrl, String applicationId, Path stateDir, Duration tick,
    Duration retryBackoff, Duration maxRetryBackoff, int threads, int maxWaitingJobs) {

  /** No admission limit: every run starts when it is registered. */
  public static final int UNLIMITED = 0;

  public PlannerConfig {
    if (tick.isZero() || tick.isNegative()) {
      throw new IllegalArgumentException("tick must be positive");
    }
    if (threads < 1) {
      throw new IllegalArgumentException("threads must be at least 1");
    }
    if (maxWaitingJobs < 0) {
      throw new IllegalArgumentException("maxWaitingJobs must be 0 (no limit) or more, was " + maxWaitingJobs);
    }
  }

  public static PlannerConfig of(String bootstrap, String registryUrl, Path stateDir) {
    return new PlannerConfig(bootstrap, registryUrl, "distillery-planner", stateDir, Duration.ofMillis(250),
        Duration.ofSeconds(1), Duration.ofSeconds(30), 2, UNLIMITED);
  }

  public static PlannerConfig from(Settings s) {
    return new PlannerConfig(s.required("BOOTSTRAP"), s.required("REGISTRY"),
        s.string("APPLICATION_ID", "distillery-planner"), Path.of(s.string("STATE_DIR", "run/planner-state")),
        s.duration("TICK", Duration.ofMillis(250)), s.duration("RETRY_BACKOFF", Duration.ofSeconds(1)),
        s.duration("MAX_RETRY_BACKOFF", Duration.ofSeconds(30)), s.integer("THREADS", 2),
        s.integer("MAX_WAITING_JOBS", UNLIMITED));
  }

  public static PlannerConfig fromEnv(Map<String, String> env) {
    return from(new Settings("planner", env));
  }

  public PlannerConfig withBackoff(Duration initial, Duration max) {
    return new PlannerConfig(bootstrap, registryUrl, applicationId, stateDir, tick, initial, max, threads,
        maxWaitingJobs);
  }

  public PlannerConfig withMaxWaitingJobs(int value) {
    return new PlannerConfig(bootstrap, registryUrl, applicationId, stateDir, tick, retryBackoff, maxRetryBackoff,
        threads, value);
  }
}
