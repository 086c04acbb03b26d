package io.distillery.runtime.worker;

import static org.assertj.core.api.Assertions.assertThat;

import io.distillery.runtime.config.Settings;
import java.nio.file.Path;
import java.util.Map;
import org.junit.jupiter.api.Test;

class WorkerConfigTest {

  @Test
  void theEnvironmentAndTheCodePathShareOneSetOfDefaults() {
    // of() keeps HTTP off (-1) where the environment's default picks a free port (0)
    WorkerConfig fromEnv =
        WorkerConfig.from(
            new Settings(
                "worker",
                Map.of(
                    "DISTILLERY_BOOTSTRAP",
                    "b:9092",
                    "DISTILLERY_REGISTRY",
                    "http://r",
                    "DISTILLERY_STORE",
                    "store",
                    "DISTILLERY_WORKER_HTTP_PORT",
                    "-1")));

    assertThat(fromEnv).isEqualTo(WorkerConfig.of("b:9092", "http://r", Path.of("store")));
  }

  @Test
  void everySettingIsInTheTable() {
    // replication is one component read from two settings (factor and min in-sync replicas)
    assertThat(WorkerConfig.PARAMETERS)
        .hasSize(WorkerConfig.class.getRecordComponents().length + 1);
  }
}
