package io.distillery.runtime.config;

import io.distillery.runtime.recipe.RecipeParser;
import java.time.Duration;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Set;

/**
 * Typed reads of {@code DISTILLERY_<SERVICE>_<KEY>} settings (falling back to the shared {@code
 * DISTILLERY_<KEY>}) from a map — the environment in {@code main}, a plain map in tests. Records
 * every value it hands out so a service can print its effective config at start, with secrets
 * masked.
 */
public final class Settings {

  private static final Set<String> SECRET_HINTS = Set.of("PASSWORD", "SECRET", "TOKEN", "KEY");

  private final String service;
  private final Map<String, String> source;
  private final Map<String, String> effective = new LinkedHashMap<>();

  public Settings(String service, Map<String, String> source) {
    this.service = service.toUpperCase().replace('-', '_');
    this.source = Map.copyOf(source);
  }

  public String string(String key, String dflt) {
    String specific = source.get("DISTILLERY_" + service + "_" + key);
    String shared = source.get("DISTILLERY_" + key);
    String v = specific != null ? specific : shared != null ? shared : dflt;
    effective.put(key, v);
    return v;
  }

  public String required(String key) {
    String v = string(key, null);
    if (v == null || v.isBlank()) {
      throw new IllegalArgumentException(
          "setting DISTILLERY_" + service + "_" + key + " (or DISTILLERY_" + key + ") is required");
    }
    return v;
  }

  public int integer(String key, int dflt) {
    String v = string(key, Integer.toString(dflt));
    try {
      return Integer.parseInt(v.trim());
    } catch (NumberFormatException e) {
      throw new IllegalArgumentException("setting " + key + "='" + v + "' is not a whole number");
    }
  }

  public Duration duration(String key, Duration dflt) {
    return parseDuration(string(key, dflt.toMillis() + "ms"));
  }

  /** {@code 250ms}, {@code 10s}, {@code 5m}, {@code 1h}, as recipes write durations. */
  public static Duration parseDuration(String text) {
    return RecipeParser.parseDuration(text);
  }

  /** The values read so far, secrets masked, for a start-up log line. */
  public String describe() {
    StringBuilder sb = new StringBuilder();
    effective.forEach(
        (k, v) -> {
          boolean secret = SECRET_HINTS.stream().anyMatch(k::contains);
          sb.append(sb.isEmpty() ? "" : " ")
              .append(k.toLowerCase())
              .append('=')
              .append(secret && v != null ? "****" : v);
        });
    return sb.toString();
  }
}
