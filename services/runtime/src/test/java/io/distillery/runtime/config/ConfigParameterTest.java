package io.distillery.runtime.config;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.time.Duration;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

class ConfigParameterTest {

  static final ConfigParameter<Duration> TICK =
      ConfigParameter.duration("TICK", "250ms", "clock period");
  static final ConfigParameter<Integer> THREADS =
      ConfigParameter.integer("THREADS", 2, "stream threads");
  static final ConfigParameter<String> BOOTSTRAP =
      ConfigParameter.required("BOOTSTRAP", "Kafka bootstrap servers");

  @Test
  void readsTheServiceSettingBeforeTheSharedOneBeforeTheDefault() {
    assertThat(THREADS.read(new Settings("planner", Map.of()))).isEqualTo(2);
    assertThat(THREADS.read(new Settings("planner", Map.of("DISTILLERY_THREADS", "3"))))
        .isEqualTo(3);
    assertThat(
            THREADS.read(
                new Settings(
                    "planner",
                    Map.of("DISTILLERY_THREADS", "3", "DISTILLERY_PLANNER_THREADS", "4"))))
        .isEqualTo(4);
    assertThat(TICK.read(new Settings("planner", Map.of("DISTILLERY_PLANNER_TICK", "2s"))))
        .isEqualTo(Duration.ofSeconds(2));
  }

  @Test
  void theDefaultValueIsTheParsedDefaultText() {
    assertThat(TICK.defaultValue()).isEqualTo(Duration.ofMillis(250));
    assertThatThrownBy(BOOTSTRAP::defaultValue).hasMessageContaining("BOOTSTRAP has no default");
  }

  @Test
  void aBadOrMissingValueNamesTheSetting() {
    assertThatThrownBy(
            () -> THREADS.read(new Settings("planner", Map.of("DISTILLERY_THREADS", "many"))))
        .hasMessageContaining("THREADS='many' is invalid");
    assertThatThrownBy(() -> BOOTSTRAP.read(new Settings("planner", Map.of())))
        .hasMessageContaining("DISTILLERY_PLANNER_BOOTSTRAP (or DISTILLERY_BOOTSTRAP) is required");
  }

  @Test
  void theTableIsTheDocumentation() {
    assertThat(ConfigParameter.markdown("planner", List.of(BOOTSTRAP, TICK)))
        .contains("| `DISTILLERY_PLANNER_BOOTSTRAP` | required | Kafka bootstrap servers |")
        .contains("| `DISTILLERY_PLANNER_TICK` | `250ms` | clock period |");
  }
}
