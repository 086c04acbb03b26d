package io.distillery.planner;

import static org.assertj.core.api.Assertions.assertThat;

import io.distillery.runtime.config.Settings;
import java.nio.file.Path;
import java.util.Map;
import org.junit.jupiter.api.Test;

class PlannerConfigTest {

  @Test
  void theEnvironmentAndTheCodePathShareOneSetOfDefaults() {
    PlannerConfig fromEnv =
        PlannerConfig.from(
            new Settings(
                "planner",
                Map.of(
                    "DISTILLERY_BOOTSTRAP",
                    "b:9092",
                    "DISTILLERY_REGISTRY",
                    "http://r",
                    "DISTILLERY_PLANNER_STATE_DIR",
                    "state")));

    assertThat(fromEnv).isEqualTo(PlannerConfig.of("b:9092", "http://r", Path.of("state")));
  }

  @Test
  void everySettingIsInTheTable() {
    // replication is one component read from two settings (factor and min in-sync replicas)
    assertThat(PlannerConfig.PARAMETERS)
        .hasSize(PlannerConfig.class.getRecordComponents().length + 1);
  }
}
