package io.distillery.feedback;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.stream.IntStream;
import org.junit.jupiter.api.Test;

class TriggerPolicyTest {

  final TriggerPolicy policy =
      new TriggerPolicy(
          Duration.ofMinutes(10),
          Duration.ofMinutes(1),
          Duration.ZERO,
          0.05,
          50,
          Duration.ofMinutes(30),
          4,
          Duration.ofMinutes(1));

  @Test
  void shouldPutAnEventIntoSizeOverAdvanceWindows() {
    long t = Duration.ofMinutes(100).toMillis() + 30_000; // 100.5 min
    List<Long> starts = policy.windowStarts(t);
    assertThat(starts).hasSize(10);
    assertThat(starts.getFirst()).isEqualTo(Duration.ofMinutes(91).toMillis());
    assertThat(starts.getLast()).isEqualTo(Duration.ofMinutes(100).toMillis());
    assertThat(starts).allSatisfy(s -> assertThat(s <= t && t < policy.end(s)).isTrue());
  }

  @Test
  void shouldTripOnlyWithEnoughMisfiresAndRate() {
    assertThat(policy.tripped(window(50, 1000))).isTrue(); // 5.0 %
    assertThat(policy.tripped(window(50, 1001))).isFalse(); // 4.995 %
    assertThat(policy.tripped(window(49, 100))).isFalse(); // rate fine, too few
    assertThat(policy.tripped(window(60, 0))).isFalse(); // no request reported yet
  }

  static MisfireWindow window(int misfires, long requests) {
    return new MisfireWindow(
        "d",
        0,
        600_000,
        0,
        requests,
        IntStream.range(0, misfires).mapToObj(i -> String.format("%04d", i)).toList());
  }

  @Test
  void shouldDeriveTheSameRunIdForTheSameIncidentOnly() {
    assertThat(TriggerPolicy.runId("d", 60_000))
        .isEqualTo(TriggerPolicy.runId("d", 60_000))
        .isNotEqualTo(TriggerPolicy.runId("d", 120_000))
        .isNotEqualTo(TriggerPolicy.runId("e", 60_000));
  }

  @Test
  void shouldHoldOutAboutAFifthOfPromptsByHash() {
    MisfireDataset d = new MisfireDataset(null, 20);
    long heldout =
        IntStream.range(0, 2000)
            .mapToObj(i -> "prompt " + i)
            .filter(p -> d.split(p).equals("heldout"))
            .count();
    assertThat(heldout).isBetween(340L, 460L);
    assertThat(d.split("2 + 2 =")).isEqualTo(d.split("2 + 2 ="));
  }

  @Test
  void shouldRejectAnInvalidPolicyNamingTheSetting() {
    FeedbackConfig c = FeedbackConfig.of("b:9092", "http://r", Path.of("s"), Path.of("store"));
    assertThatThrownBy(
            () ->
                c.withPolicy(
                    Duration.ofMinutes(1),
                    Duration.ofMinutes(2),
                    Duration.ZERO,
                    0.05,
                    50,
                    Duration.ZERO,
                    4))
        .hasMessageContaining("ADVANCE");
    assertThatThrownBy(
            () ->
                c.withPolicy(
                    Duration.ofMinutes(10),
                    Duration.ofMinutes(1),
                    Duration.ZERO,
                    1.5,
                    50,
                    Duration.ZERO,
                    4))
        .hasMessageContaining("MIN_RATE");
    assertThatThrownBy(() -> FeedbackConfig.parseGates("retention"))
        .hasMessageContaining("retention");
    assertThat(
            FeedbackConfig.fromEnv(
                java.util.Map.of(
                    "DISTILLERY_BOOTSTRAP",
                    "b:9092",
                    "DISTILLERY_REGISTRY",
                    "http://r",
                    "DISTILLERY_FEEDBACK_MIN_RATE",
                    "0.2",
                    "DISTILLERY_FEEDBACK_WINDOW",
                    "30s",
                    "DISTILLERY_FEEDBACK_ADVANCE",
                    "5s")))
        .satisfies(
            f -> {
              assertThat(f.minRate()).isEqualTo(0.2);
              assertThat(f.window()).isEqualTo(Duration.ofSeconds(30));
              assertThat(f.gates()).containsEntry("retention", 0.9);
            });
  }
}
