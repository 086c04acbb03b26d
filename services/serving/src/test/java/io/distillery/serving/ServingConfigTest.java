package io.distillery.serving;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.distillery.runtime.config.Settings;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

class ServingConfigTest {

  static final Map<String, String> BASE =
      Map.of("DISTILLERY_SERVING_BOOTSTRAP", "k:9092", "DISTILLERY_REGISTRY", "http://r:8081");

  @Test
  void theEnvironmentAndTheCodePathShareOneSetOfDefaults() {
    // of() binds a free port (0) where the environment's default is 8090
    ServingConfig fromEnv =
        ServingConfig.from(
            new Settings(
                "serving",
                Map.of(
                    "DISTILLERY_BOOTSTRAP",
                    "b:9092",
                    "DISTILLERY_REGISTRY",
                    "http://r",
                    "DISTILLERY_STORE",
                    "store",
                    "DISTILLERY_SERVING_PORT",
                    "0")));

    assertThat(fromEnv).isEqualTo(ServingConfig.of("b:9092", "http://r", Path.of("store")));
  }

  @Test
  void everySettingIsInTheTable() {
    assertThat(ServingConfig.PARAMETERS).hasSize(ServingConfig.class.getRecordComponents().length);
  }

  @Test
  void shouldReadServingKeysAndFallBackToSharedOnes() {
    Map<String, String> env = new java.util.HashMap<>(BASE);
    env.put("DISTILLERY_SERVING_DEPLOYMENTS", "chat, search");
    env.put("DISTILLERY_SERVING_CONFIDENCE_THRESHOLD", "-0.5");
    env.put("DISTILLERY_SERVING_TRAFFIC_INTERVAL_MS", "250");
    env.put("DISTILLERY_SERVING_REQUEST_TIMEOUT", "2s");
    env.put("DISTILLERY_STORE", "/var/store");
    env.put("DISTILLERY_SERVING_READ_ROOTS", "/a:/b");

    ServingConfig c = ServingConfig.fromEnv(env);

    assertThat(c.bootstrap()).isEqualTo("k:9092");
    assertThat(c.registryUrl()).isEqualTo("http://r:8081");
    assertThat(c.deployments()).containsExactly("chat", "search");
    assertThat(c.hosts("chat")).isTrue();
    assertThat(c.hosts("other")).isFalse();
    assertThat(c.confidenceThreshold()).isEqualTo(-0.5);
    assertThat(c.trafficIntervalMs()).isEqualTo(250);
    assertThat(c.requestTimeout()).isEqualTo(Duration.ofSeconds(2));
    assertThat(c.storeRoot()).isEqualTo(Path.of("/var/store"));
    assertThat(c.readRoots()).containsExactly(Path.of("/a"), Path.of("/b"));
    assertThat(c.port()).isEqualTo(8090);
  }

  @Test
  void shouldHostEveryDeploymentByDefault() {
    ServingConfig c = ServingConfig.fromEnv(BASE);
    assertThat(c.deployments()).isEqualTo(List.of("*"));
    assertThat(c.hosts("anything")).isTrue();
    assertThat(c.confidenceThreshold()).isEqualTo(-1.0);
  }

  @Test
  void shouldRefuseInvalidSettingsNamingTheKey() {
    assertThatThrownBy(
            () -> ServingConfig.fromEnv(Map.of("DISTILLERY_SERVING_REGISTRY", "http://r")))
        .hasMessageContaining("BOOTSTRAP");
    assertThatThrownBy(
            () -> ServingConfig.fromEnv(with("DISTILLERY_SERVING_CONFIDENCE_THRESHOLD", "high")))
        .hasMessageContaining("CONFIDENCE_THRESHOLD");
    assertThatThrownBy(
            () -> ServingConfig.fromEnv(with("DISTILLERY_SERVING_MAX_TOKENS_LIMIT", "0")))
        .hasMessageContaining("MAX_TOKENS_LIMIT");
    assertThatThrownBy(() -> ServingConfig.fromEnv(with("DISTILLERY_SERVING_QUEUE_SIZE", "0")))
        .hasMessageContaining("QUEUE_SIZE");
    assertThatThrownBy(() -> ServingConfig.fromEnv(with("DISTILLERY_SERVING_DEPLOYMENTS", " , ")))
        .hasMessageContaining("DEPLOYMENTS");
    assertThatThrownBy(() -> ServingConfig.fromEnv(with("DISTILLERY_SERVING_PORT", "70000")))
        .hasMessageContaining("PORT");
  }

  private static Map<String, String> with(String key, String value) {
    Map<String, String> env = new java.util.HashMap<>(BASE);
    env.put(key, value);
    return env;
  }
}
