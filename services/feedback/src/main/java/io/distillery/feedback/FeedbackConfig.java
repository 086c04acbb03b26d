package io.distillery.feedback;

import io.distillery.runtime.config.ConfigParameter;
import io.distillery.runtime.config.Settings;
import java.nio.file.Path;
import java.time.Duration;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Settings of the feedback service. From the environment: {@code DISTILLERY_FEEDBACK_<KEY>} or
 * {@code DISTILLERY_<KEY>}.
 *
 * @param bootstrap Kafka bootstrap servers (BOOTSTRAP)
 * @param registryUrl Confluent-compatible schema registry URL (REGISTRY)
 * @param applicationId Kafka Streams application id; its state and changelogs are keyed by it
 *     (APPLICATION_ID)
 * @param stateDir where the state stores live (STATE_DIR)
 * @param storeRoot artefact store root where misfire datasets are written (STORE)
 * @param window hopping window size (WINDOW, default 10m)
 * @param advance hopping window advance (ADVANCE, default 1m)
 * @param grace how long after its end a window still takes late events before it is judged (GRACE,
 *     default 10s)
 * @param minRate misfire rate (distinct misfires / requests) a window must reach to trip (MIN_RATE,
 *     default 0.05)
 * @param minMisfires distinct misfires a window must hold to trip (MIN_MISFIRES, default 50)
 * @param coolDown after a trigger, windows ending within this time belong to the same incident
 *     (COOL_DOWN, default 1h)
 * @param maxRunsPerDay re-distillation runs one deployment may start per UTC day (MAX_RUNS_PER_DAY,
 *     default 4)
 * @param recipe the re-distill recipe when a deployment names none (RECIPE, default
 *     recipes/redistill.yaml)
 * @param recipesDir where recipe names from the {@code redistillRecipe} label are looked up
 *     (RECIPES_DIR)
 * @param gates evaluator gates of the re-distillation run, {@code name=value,...} (GATES)
 * @param heldoutPercent share of misfire prompts (by prompt hash) kept for the held-out split
 *     (HELDOUT_PERCENT)
 * @param tick how often the wall clock closes windows of quiet deployments (TICK, default 1s)
 * @param idleClose the wall clock judges a window only this long after its end plus the grace, so
 *     that a backlog younger than this (after downtime) is still counted in full; event time judges
 *     windows at once (IDLE_CLOSE, default 1m)
 * @param httpHost interface of the {@code /misfires} endpoint (HTTP_HOST)
 * @param httpPort port of the {@code /misfires} endpoint; 0 picks a free one, -1 disables it
 *     (HTTP_PORT, default 8095)
 * @param threads stream threads (THREADS)
 * @param guarantee Kafka Streams processing guarantee: at_least_once (a crash may re-publish a run,
 *     which the planner ignores by its deterministic run id) or exactly_once_v2
 *     (PROCESSING_GUARANTEE)
 */
public record FeedbackConfig(
    String bootstrap,
    String registryUrl,
    String applicationId,
    Path stateDir,
    Path storeRoot,
    Duration window,
    Duration advance,
    Duration grace,
    double minRate,
    long minMisfires,
    Duration coolDown,
    int maxRunsPerDay,
    Path recipe,
    Path recipesDir,
    Map<String, Double> gates,
    int heldoutPercent,
    Duration tick,
    Duration idleClose,
    String httpHost,
    int httpPort,
    int threads,
    String guarantee) {

  public static final String DEFAULT_GATES = "retention=0.9,misfireImprovement=0.0";

  static final ConfigParameter<String> BOOTSTRAP =
      ConfigParameter.required("BOOTSTRAP", "Kafka bootstrap servers");
  static final ConfigParameter<String> REGISTRY =
      ConfigParameter.required("REGISTRY", "Confluent-compatible schema registry URL");
  static final ConfigParameter<String> APPLICATION_ID =
      ConfigParameter.text(
          "APPLICATION_ID",
          "distillery-feedback",
          "Kafka Streams application id; its state and changelogs are keyed by it");
  static final ConfigParameter<Path> STATE_DIR =
      ConfigParameter.of(
          "STATE_DIR", "run/feedback-state", Path::of, "where the state stores live");
  static final ConfigParameter<Path> STORE =
      ConfigParameter.of(
          "STORE", "run/store", Path::of, "artefact store root where misfire datasets are written");
  static final ConfigParameter<Duration> WINDOW =
      ConfigParameter.duration("WINDOW", "10m", "hopping window size");
  static final ConfigParameter<Duration> ADVANCE =
      ConfigParameter.duration("ADVANCE", "1m", "hopping window advance");
  static final ConfigParameter<Duration> GRACE =
      ConfigParameter.duration(
          "GRACE",
          "10s",
          "how long after its end a window still takes late events before it is judged");
  static final ConfigParameter<Double> MIN_RATE =
      ConfigParameter.decimal(
          "MIN_RATE",
          0.05,
          "misfire rate (distinct misfires / requests) a window must reach to trip");
  static final ConfigParameter<Long> MIN_MISFIRES =
      ConfigParameter.of(
          "MIN_MISFIRES",
          "50",
          v -> Long.parseLong(v.trim()),
          "distinct misfires a window must hold to trip");
  static final ConfigParameter<Duration> COOL_DOWN =
      ConfigParameter.duration(
          "COOL_DOWN",
          "1h",
          "after a trigger, windows ending within this time belong to the same incident");
  static final ConfigParameter<Integer> MAX_RUNS_PER_DAY =
      ConfigParameter.integer(
          "MAX_RUNS_PER_DAY", 4, "re-distillation runs one deployment may start per UTC day");
  static final ConfigParameter<Path> RECIPE =
      ConfigParameter.of(
          "RECIPE",
          "recipes/redistill.yaml",
          Path::of,
          "the re-distill recipe when a deployment names none");
  static final ConfigParameter<Path> RECIPES_DIR =
      ConfigParameter.of(
          "RECIPES_DIR",
          "recipes",
          Path::of,
          "where recipe names from the redistillRecipe label are looked up");
  static final ConfigParameter<Map<String, Double>> GATES =
      ConfigParameter.of(
          "GATES",
          DEFAULT_GATES,
          FeedbackConfig::parseGates,
          "evaluator gates of the re-distillation run, name=value,...");
  static final ConfigParameter<Integer> HELDOUT_PERCENT =
      ConfigParameter.integer(
          "HELDOUT_PERCENT",
          20,
          "share of misfire prompts (by prompt hash) kept for the held-out split");
  static final ConfigParameter<Duration> TICK =
      ConfigParameter.duration(
          "TICK", "1s", "how often the wall clock closes windows of quiet deployments");
  static final ConfigParameter<Duration> IDLE_CLOSE =
      ConfigParameter.duration(
          "IDLE_CLOSE",
          "1m",
          "the wall clock judges a window only this long after its end plus the grace");
  static final ConfigParameter<String> HTTP_HOST =
      ConfigParameter.text("HTTP_HOST", "127.0.0.1", "interface of the /misfires endpoint");
  static final ConfigParameter<Integer> HTTP_PORT =
      ConfigParameter.integer(
          "HTTP_PORT", 8095, "port of the /misfires endpoint; 0 picks a free one, -1 disables it");
  static final ConfigParameter<Integer> THREADS =
      ConfigParameter.integer("THREADS", 1, "stream threads");
  static final ConfigParameter<String> PROCESSING_GUARANTEE =
      ConfigParameter.text(
          "PROCESSING_GUARANTEE",
          "at_least_once",
          "Kafka Streams processing guarantee: at_least_once or exactly_once_v2");

  /** Every setting of the feedback service, in one table. */
  public static final List<ConfigParameter<?>> PARAMETERS =
      List.of(
          BOOTSTRAP,
          REGISTRY,
          APPLICATION_ID,
          STATE_DIR,
          STORE,
          WINDOW,
          ADVANCE,
          GRACE,
          MIN_RATE,
          MIN_MISFIRES,
          COOL_DOWN,
          MAX_RUNS_PER_DAY,
          RECIPE,
          RECIPES_DIR,
          GATES,
          HELDOUT_PERCENT,
          TICK,
          IDLE_CLOSE,
          HTTP_HOST,
          HTTP_PORT,
          THREADS,
          PROCESSING_GUARANTEE);

  public FeedbackConfig {
    positive("WINDOW", window);
    positive("ADVANCE", advance);
    positive("TICK", tick);
    if (advance.compareTo(window) > 0) {
      throw new IllegalArgumentException(
          "ADVANCE " + advance + " must not exceed WINDOW " + window);
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
      throw new IllegalArgumentException(
          "MAX_RUNS_PER_DAY must be at least 1, got " + maxRunsPerDay);
    }
    if (heldoutPercent < 0 || heldoutPercent > 100) {
      throw new IllegalArgumentException(
          "HELDOUT_PERCENT must be within [0, 100], got " + heldoutPercent);
    }
    if (threads < 1) {
      throw new IllegalArgumentException("THREADS must be at least 1");
    }
    if (!guarantee.equals("at_least_once") && !guarantee.equals("exactly_once_v2")) {
      throw new IllegalArgumentException(
          "PROCESSING_GUARANTEE must be at_least_once or exactly_once_v2, got '" + guarantee + "'");
    }
    gates = Map.copyOf(gates);
  }

  /**
   * Defaults for a local stack, with the given windows and thresholds left to {@link #withPolicy}.
   */
  public static FeedbackConfig of(
      String bootstrap, String registryUrl, Path stateDir, Path storeRoot) {
    return new FeedbackConfig(
        bootstrap,
        registryUrl,
        APPLICATION_ID.defaultValue(),
        stateDir,
        storeRoot,
        WINDOW.defaultValue(),
        ADVANCE.defaultValue(),
        GRACE.defaultValue(),
        MIN_RATE.defaultValue(),
        MIN_MISFIRES.defaultValue(),
        COOL_DOWN.defaultValue(),
        MAX_RUNS_PER_DAY.defaultValue(),
        RECIPE.defaultValue(),
        RECIPES_DIR.defaultValue(),
        GATES.defaultValue(),
        HELDOUT_PERCENT.defaultValue(),
        TICK.defaultValue(),
        IDLE_CLOSE.defaultValue(),
        HTTP_HOST.defaultValue(),
        0,
        THREADS.defaultValue(),
        PROCESSING_GUARANTEE.defaultValue()); // port 0: the one-process stack takes any free port
  }

  public static FeedbackConfig from(Settings s) {
    return new FeedbackConfig(
        BOOTSTRAP.read(s),
        REGISTRY.read(s),
        APPLICATION_ID.read(s),
        STATE_DIR.read(s),
        STORE.read(s),
        WINDOW.read(s),
        ADVANCE.read(s),
        GRACE.read(s),
        MIN_RATE.read(s),
        MIN_MISFIRES.read(s),
        COOL_DOWN.read(s),
        MAX_RUNS_PER_DAY.read(s),
        RECIPE.read(s),
        RECIPES_DIR.read(s),
        GATES.read(s),
        HELDOUT_PERCENT.read(s),
        TICK.read(s),
        IDLE_CLOSE.read(s),
        HTTP_HOST.read(s),
        HTTP_PORT.read(s),
        THREADS.read(s),
        PROCESSING_GUARANTEE.read(s));
  }

  public static FeedbackConfig fromEnv(Map<String, String> env) {
    return from(new Settings("feedback", env));
  }

  /** The trigger policy: windows, thresholds, cool-down and the daily cap. */
  public FeedbackConfig withPolicy(
      Duration window,
      Duration advance,
      Duration grace,
      double minRate,
      long minMisfires,
      Duration coolDown,
      int maxRunsPerDay) {
    return new FeedbackConfig(
        bootstrap,
        registryUrl,
        applicationId,
        stateDir,
        storeRoot,
        window,
        advance,
        grace,
        minRate,
        minMisfires,
        coolDown,
        maxRunsPerDay,
        recipe,
        recipesDir,
        gates,
        heldoutPercent,
        tick,
        idleClose,
        httpHost,
        httpPort,
        threads,
        guarantee);
  }

  public FeedbackConfig withRecipe(Path recipe) {
    return new FeedbackConfig(
        bootstrap,
        registryUrl,
        applicationId,
        stateDir,
        storeRoot,
        window,
        advance,
        grace,
        minRate,
        minMisfires,
        coolDown,
        maxRunsPerDay,
        recipe,
        recipesDir,
        gates,
        heldoutPercent,
        tick,
        idleClose,
        httpHost,
        httpPort,
        threads,
        guarantee);
  }

  public FeedbackConfig withStateDir(Path stateDir) {
    return new FeedbackConfig(
        bootstrap,
        registryUrl,
        applicationId,
        stateDir,
        storeRoot,
        window,
        advance,
        grace,
        minRate,
        minMisfires,
        coolDown,
        maxRunsPerDay,
        recipe,
        recipesDir,
        gates,
        heldoutPercent,
        tick,
        idleClose,
        httpHost,
        httpPort,
        threads,
        guarantee);
  }

  public FeedbackConfig withIdleClose(Duration idleClose) {
    return new FeedbackConfig(
        bootstrap,
        registryUrl,
        applicationId,
        stateDir,
        storeRoot,
        window,
        advance,
        grace,
        minRate,
        minMisfires,
        coolDown,
        maxRunsPerDay,
        recipe,
        recipesDir,
        gates,
        heldoutPercent,
        tick,
        idleClose,
        httpHost,
        httpPort,
        threads,
        guarantee);
  }

  public FeedbackConfig withApplicationId(String applicationId) {
    return new FeedbackConfig(
        bootstrap,
        registryUrl,
        applicationId,
        stateDir,
        storeRoot,
        window,
        advance,
        grace,
        minRate,
        minMisfires,
        coolDown,
        maxRunsPerDay,
        recipe,
        recipesDir,
        gates,
        heldoutPercent,
        tick,
        idleClose,
        httpHost,
        httpPort,
        threads,
        guarantee);
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
        throw new IllegalArgumentException(
            "GATES entry '" + entry.trim() + "' has no numeric value");
      }
    }
    return gates;
  }

  private static void positive(String key, Duration d) {
    if (d.isZero() || d.isNegative()) {
      throw new IllegalArgumentException(key + " must be positive, got " + d);
    }
  }
}
