package io.distillery.runtime.config;

import java.time.Duration;
import java.util.List;
import java.util.Objects;
import java.util.function.Function;

/**
 * One setting of a service, declared once: its key, its default (as the text a user would write),
 * how it is parsed, and what it means. A service config lists its parameters in one table; {@code
 * from(Settings)} reads them, its programmatic constructors take the same defaults through {@link
 * #defaultValue()}, and the operations docs are printed from the table ({@link #markdown}), so a
 * default is never written twice. Modelled on Strimzi's {@code ConfigParameter}.
 *
 * @param key the setting's name under {@code DISTILLERY_<SERVICE>_} (or the shared {@code
 *     DISTILLERY_})
 * @param defaultText the default as text, or null when the setting is required
 * @param parser text to value; an {@link IllegalArgumentException} from it names the value, and
 *     {@link #read} adds the key
 * @param description one line for the docs
 */
public record ConfigParameter<T>(
    String key, String defaultText, Function<String, T> parser, String description) {

  public ConfigParameter {
    Objects.requireNonNull(key, "key");
    Objects.requireNonNull(parser, "parser");
    Objects.requireNonNull(description, "description");
  }

  public static <T> ConfigParameter<T> of(
      String key, String defaultText, Function<String, T> parser, String description) {
    return new ConfigParameter<>(
        key, Objects.requireNonNull(defaultText, "defaultText"), parser, description);
  }

  public static ConfigParameter<String> required(String key, String description) {
    return new ConfigParameter<>(key, null, Function.identity(), description);
  }

  public static ConfigParameter<String> text(String key, String defaultText, String description) {
    return of(key, defaultText, Function.identity(), description);
  }

  public static ConfigParameter<Integer> integer(String key, int defaultValue, String description) {
    return of(key, Integer.toString(defaultValue), v -> Integer.parseInt(v.trim()), description);
  }

  public static ConfigParameter<Double> decimal(
      String key, double defaultValue, String description) {
    return of(key, Double.toString(defaultValue), v -> Double.parseDouble(v.trim()), description);
  }

  /** A duration as recipes write it: {@code 250ms}, {@code 10s}, {@code 5m}, {@code 1h}. */
  public static ConfigParameter<Duration> duration(
      String key, String defaultText, String description) {
    return of(key, defaultText, Settings::parseDuration, description);
  }

  public boolean isRequired() {
    return defaultText == null;
  }

  /**
   * The setting's value in {@code settings}, or its default; a value that does not parse names the
   * key.
   */
  public T read(Settings settings) {
    String text = isRequired() ? settings.required(key) : settings.string(key, defaultText);
    try {
      return parser.apply(text);
    } catch (IllegalArgumentException e) {
      throw new IllegalArgumentException(
          "setting " + key + "='" + text + "' is invalid: " + e.getMessage(), e);
    }
  }

  /** The parsed default, for configs built in code (tests, the one-process stack). */
  public T defaultValue() {
    if (isRequired()) {
      throw new IllegalStateException("setting " + key + " has no default");
    }
    return parser.apply(defaultText);
  }

  /** A Markdown table of a service's settings, for docs/operations.md. */
  public static String markdown(String service, List<ConfigParameter<?>> parameters) {
    String prefix = "DISTILLERY_" + service.toUpperCase().replace('-', '_') + "_";
    StringBuilder sb = new StringBuilder("| setting | default | meaning |\n|---|---|---|\n");
    for (ConfigParameter<?> p : parameters) {
      sb.append("| `")
          .append(prefix)
          .append(p.key())
          .append("` | ")
          .append(
              p.isRequired()
                  ? "required"
                  : p.defaultText().isEmpty() ? "(empty)" : "`" + p.defaultText() + "`")
          .append(" | ")
          .append(p.description())
          .append(" |\n");
    }
    return sb.toString();
  }
}
