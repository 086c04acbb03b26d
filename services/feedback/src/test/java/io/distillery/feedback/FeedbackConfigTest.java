package io.distillery.feedback;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.distillery.runtime.config.Settings;
import java.nio.file.Path;
import java.util.Map;
import org.junit.jupiter.api.Test;

class FeedbackConfigTest {

  @Test
  void theEnvironmentAndTheCodePathShareOneSetOfDefaults() {
    FeedbackConfig fromEnv =
        FeedbackConfig.from(
            new Settings(
                "feedback",
                Map.of(
                    "DISTILLERY_BOOTSTRAP",
                    "b:9092",
                    "DISTILLERY_REGISTRY",
                    "http://r",
                    "DISTILLERY_FEEDBACK_STATE_DIR",
                    "state",
                    "DISTILLERY_STORE",
                    "store",
                    "DISTILLERY_FEEDBACK_HTTP_PORT",
                    "0")));

    assertThat(fromEnv)
        .isEqualTo(FeedbackConfig.of("b:9092", "http://r", Path.of("state"), Path.of("store")));
  }

  @Test
  void everySettingIsInTheTable() {
    assertThat(FeedbackConfig.PARAMETERS)
        .hasSize(FeedbackConfig.class.getRecordComponents().length);
  }

  @Test
  void aMalformedGateNamesTheSettingAndTheEntry() {
    assertThatThrownBy(
            () ->
                FeedbackConfig.from(
                    new Settings(
                        "feedback",
                        Map.of(
                            "DISTILLERY_BOOTSTRAP",
                            "b",
                            "DISTILLERY_REGISTRY",
                            "r",
                            "DISTILLERY_FEEDBACK_GATES",
                            "retention"))))
        .hasMessageContaining("GATES='retention' is invalid")
        .hasMessageContaining("is not name=value");
  }
}
