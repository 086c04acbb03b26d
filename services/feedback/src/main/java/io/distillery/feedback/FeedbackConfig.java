package io.distillery.feedback;

import io.distillery.runtime.config.Settings;
import java.nio.file.Path;
import java.time.Duration;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * Settings of the feedback service. From the environment: {@code DISTILLERY_FEEDBACK_<KEY>} or
 * {@code DISTILLERY_<KEY>}.
 *
 * @param bootstrap Kafka bootstrap servers (BOOTSTRAP)
 * @param registryUrl Confluent-compatible schema registry URL (REGISTRY)
 * @param applicationId Kafka Streams application id; its state and changelogs are keyed by it (APPLICATION_ID)
 * @param stateDir where the state stores live (STATE_DIR)
 * @param storeRoot artefact store root where misfire datasets are written (STORE)
 * @param window hopping window size (WINDOW, default 10m)
 * @param advance hopping window advance (ADVANCE, default 1m)
 * @param grace how long after its end a window still takes late events before it is judged (GRACE, default 10s)
 * @param minRate misfire rate (distinct misfires / requests) a window must reach to trip (MIN_RATE, default 0.05)
 * @param minMisfires distinct misfires a window must hold to trip (MIN_MISFIRES, default 50)
 * @param coolDown after a trigger, windows ending within this time belong to the same incident (COOL_DOWN, default 1h)
 * @param maxRunsPerDay re-distillation runs one deployment may start per UTC day (MAX_RUNS_PER_DAY, default 4)
 * @param recipe the re-distill recipe when a deployment names none (RECIPE, default recipes/redistill.yaml)
 * @param recipesDir where recipe names from the {@code redistillRecipe} label are looked up (RECIPES_DIR)
 * @param gates evaluator gates of the re-distillation run, {@code name=value,...} (GATES)
 * @param heldoutPercent share of misfire prompts (by prompt hash) kept for the held-out split (HELDOUT_PERCENT)
 * @param tick how often the wall clock closes windows of quiet deployments (TICK, default 1s)
 * @param idleClose the wall clock judges a window only this long after its end plus the grace, so that a backlog
 *     younger than this (after downtime) is still counted in full; event time judges windows at once (IDLE_CLOSE,
 *     default 1m)
 * @param httpHost interface of the {@code /misfires} endpoint (HTTP_HOST)
 * @param httpPort port of the {@code /misfires} endpoint; 0 picks a free one, -1 disables it (HTTP_PORT, default 8095)
 * @param threads stream threads (THREADS)
 * @param guarantee Kafka Streams processing guarantee: at_least_once (a crash may re-publish a run, which the planner
 *     ignores by its deterministic run id) or exactly_once_v2 (PROCESSING_GUARANTEE)
 */
public record FeedbackConfig(String bootstrap, String registryUrl, String applicationId, Path stateDir, Path storeRoot,
    Duration window, Duration advance, Duration grace, double minRate, long minMisfires, Duration coolDown,
    int maxRunsPerDay, Path recipe, Path recipesDir, Map<String, Double> gates, int heldoutPercent, Duration tick,
    Duration idleClose, String httpHost, int httpPort, int threads, String guarantee) {

  public static final String DEFAULT_GATES = "retention=0.9,misfireImprovement=0.0";

  public FeedbackConfig {
    positive("WINDOW", window);
    positive("ADVANCE", advance);
    positive("TICK", tick);
    if (advance.compareTo(window) > 0) {
      throw new IllegalArgumentException("ADVANCE " + advance + " must not exceed WINDOW " + window);
    }
    if (grace.isNegative() || coolDown.isNegative() || idleClose.isNegative()) {
      throw new IllegalArgumentException("GRACE, COOL_DOWN and IDLE_CLOSE must not be negative");
    }
    if (!(minRate >= 0 && minRate <= 1)) {
      throw new IllegalArgumentException("MIN_RATE must be within [0, 1], got " + minRate);
    }
    if (minMisfires < 1) {
      throw new IllegalArgumentException("MIN_MISFIRES must be at least 1, got " + minMisfires);
    }
    if (maxRunsPerDay < 1) {
      throw new IllegalArgumentException("MAX_RUNS_PER_DAY must be at least 1, got " + maxRunsPerDay);
    }
    if (heldoutPercent < 0 || heldoutPercent > 100) {
      throw new IllegalArgumentException("HELDOUT_PERCENT must be within [0, 100], got " + heldoutPercent);
    }
    if (threads < 1) {
      throw new IllegalArgumentException("THREADS must be at least 1");
    }
    if (!guarantee.equals("at_least_once") && !guarantee.equals("exactly_once_v2")) {
      throw new IllegalArgumentException("PROCESSING_GUARANTEE must be at_least_once or exactly_once_v2, got '"
          + guarantee + "'");
    }
    gates = Map.copyOf(gates);
  }

  /** Defaults for a local stack, with the given windows and thresholds left to {@link #withPolicy}. */
  public static FeedbackConfig of(String bootstrap, String registryUrl, Path stateDir, Path storeRoot) {
    return new FeedbackConfig(bootstrap, registryUrl, "distillery-feedback", stateDir, storeRoot,
        Duration.ofMinutes(10), Duration.ofMinutes(1), Duration.ofSeconds(10), 0.05, 50, Duration.ofHours(1), 4,
        Path.of("recipes", "redistill.yaml"), Path.of("recipes"), parseGates(DEFAULT_GATES), 20, Duration.ofSeconds(1),
        Duration.ofMinutes(1), "127.0.0.1", 0, 1, "at_least_once");
  }

  public static FeedbackConfig from(Settings s) {
    return new FeedbackConfig(s.required("BOOTSTRAP"), s.required("REGISTRY"),
        s.string("APPLICATION_ID", "distillery-feedback"), Path.of(s.string("STATE_DIR", "run/feedback-state")),
        Path.of(s.string("STORE", "run/store")), s.duration("WINDOW", Duration.ofMinutes(10)),
        s.duration("ADVANCE", Duration.ofMinutes(1)), s.duration("GRACE", Duration.ofSeconds(10)),
        decimal(s, "MIN_RATE", 0.05), s.integer("MIN_MISFIRES", 50), s.duration("COOL_DOWN", Duration.ofHours(1)),
        s.integer("MAX_RUNS_PER_DAY", 4), Path.of(s.string("RECIPE", "recipes/redistill.yaml")),
        Path.of(s.string("RECIPES_DIR", "recipes")), parseGates(s.string("GATES", DEFAULT_GATES)),
        s.integer("HELDOUT_PERCENT", 20), s.duration("TICK", Duration.ofSeconds(1)),
        s.duration("IDLE_CLOSE", Duration.ofMinutes(1)), s.string("HTTP_HOST", "127.0.0.1"),
        s.integer("HTTP_PORT", 8095), s.integer("THREADS", 1), s.string("PROCESSING_GUARANTEE", "at_least_once"));
  }

  public static FeedbackConfig fromEnv(Map<String, String> env) {
    return from(new Settings("feedback", env));
  }

  /** The trigger policy: windows, thresholds, cool-down and the daily cap. */
  public FeedbackConfig withPolicy(Duration window, Duration advance, Duration grace, double minRate,
      long minMisfires, Duration coolDown, int maxRunsPerDay) {
    return new FeedbackConfig(bootstrap, registryUrl, applicationId, stateDir, storeRoot, window, advance, grace,
        minRate, minMisfires, coolDown, maxRunsPerDay, recipe, recipesDir, gates, heldoutPercent, tick, idleClose,
        httpHost, httpPort, threads, guarantee);
  }

  public FeedbackConfig withRecipe(Path recipe) {
    return new FeedbackConfig(bootstrap, registryUrl, applicationId, stateDir, storeRoot, window, advance, grace,
        minRate, minMisfires, coolDown, maxRunsPerDay, recipe, recipesDir, gates, heldoutPercent, tick, idleClose,
        httpHost, httpPort, threads, guarantee);
  }

  public FeedbackConfig withStateDir(Path stateDir) {
    return new FeedbackConfig(bootstrap, registryUrl, applicationId, stateDir, storeRoot, window, advance, grace,
        minRate, minMisfires, coolDown, maxRunsPerDay, recipe, recipesDir, gates, heldoutPercent, tick, idleClose,
        httpHost, httpPort, threads, guarantee);
  }

  public FeedbackConfig withIdleClose(Duration idleClose) {
    return new FeedbackConfig(bootstrap, registryUrl, applicationId, stateDir, storeRoot, window, advance, grace,
        minRate, minMisfires, coolDown, maxRunsPerDay, recipe, recipesDir, gates, heldoutPercent, tick, idleClose,
        httpHost, httpPort, threads, guarantee);
  }

  public FeedbackConfig withApplicationId(String applicationId) {
    return new FeedbackConfig(bootstrap, registryUrl, applicationId, stateDir, storeRoot, window, advance, grace,
        minRate, minMisfires, coolDown, maxRunsPerDay, recipe, recipesDir, gates, heldoutPercent, tick, idleClose,
        httpHost, httpPort, threads, guarantee);
  }

  /** {@code retention=0.9,misfireImprovement=0.0} as a map; a malformed entry names itself. */
  static Map<String, Double> parseGates(String text) {
    Map<String, Double> gates = new LinkedHashMap<>();
    if (text == null || text.isBlank()) {
      return gates;
    }
    for (String entry : text.split(",")) {
      String[] kv = entry.split("=", 2);
      if (kv.length != 2 || kv[0].isBlank()) {
        throw new IllegalArgumentException("GATES entry '" + entry.trim() + "' is not name=value");
      }
      try {
        gates.put(kv[0].trim(), Double.parseDouble(kv[1].trim()));
      } catch (NumberFormatException e) {
        throw new IllegalArgumentException("GATES entry '" + entry.trim() + "' has no numeric value");
      }
    }
    return gates;
  }

  private static double decimal(Settings s, String key, double dflt) {
    String v = s.string(key, Double.toString(dflt));
    try {
      return Double.parseDouble(v.trim());
    } catch (NumberFormatException e) {
      throw new IllegalArgumentException("setting " + key + "='" + v + "' is not a number");
    }
  }

  private static void positive(String key, Duration d) {
    if (d.isZero() || d.isNegative()) {
      throw new IllegalArgumentException(key + " must be positive, got " + d);
    }
  }
}
