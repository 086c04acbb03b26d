package io.distillery.deployer.rollout;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.distillery.schemas.misfire.MisfireReason;
import org.junit.jupiter.api.Test;

class CanaryWindowTest {

  static final String CANARY = "c".repeat(64);
  static final String STABLE = "s".repeat(64);

  /** Window of 60 s from t=1000, verdict after 50 canary requests, margin 0.1. */
  static CanaryWindow window() {
    return new CanaryWindow(CANARY, STABLE, 1_000, 60_000, 50, 0.10);
  }

  @Test
  void shouldRollBackWhenTheCanaryRateExceedsTheStableOneByMoreThanTheMargin() {
    CanaryWindow w = window();
    w.traffic(STABLE, 100, 1, 4, 2_000); // (4 + 1) / 100 = 0.05
    w.traffic(CANARY, 30, 0, 6, 2_000);
    w.traffic(CANARY, 20, 1, 3, 3_000); // (9 + 1) / 50 = 0.20 > 0.05 + 0.10
    CanaryWindow.Verdict v = w.decide(5_000);
    assertThat(v).isInstanceOf(CanaryWindow.Verdict.RollBack.class);
    assertThat(v.canary()).isEqualTo(new CanaryWindow.Tally(50, 1, 9));
    assertThat(v.canary().rate()).isEqualTo(0.20);
    assertThat(v.stable().rate()).isEqualTo(0.05);
    assertThat(((CanaryWindow.Verdict.RollBack) v).reason())
        .contains("0.2000 (10/50)")
        .contains("0.0500 (5/100)")
        .contains("cccccccccccc")
        .contains("0.1000");
  }

  @Test
  void shouldPromoteWhenTheCanaryIsWithinTheMargin() {
    CanaryWindow w = window();
    w.traffic(STABLE, 100, 0, 5, 2_000); // 0.05
    w.traffic(CANARY, 50, 0, 7, 2_000); // 0.14 <= 0.15
    assertThat(w.decide(5_000)).isInstanceOf(CanaryWindow.Verdict.Promote.class);
  }

  @Test
  void shouldPromoteAtExactlyTheMargin() {
    CanaryWindow w = new CanaryWindow(CANARY, STABLE, 0, 60_000, 4, 0.25);
    w.traffic(STABLE, 4, 0, 1, 1); // 0.25
    w.traffic(CANARY, 4, 0, 2, 1); // 0.50 == 0.25 + 0.25: not more than the margin
    assertThat(w.decide(0)).isInstanceOf(CanaryWindow.Verdict.Promote.class);
  }

  @Test
  void shouldKeepWaitingBeforeTheWindowEndsOrTheCanaryHasEnoughRequests() {
    CanaryWindow w = window();
    w.traffic(CANARY, 10, 0, 10, 2_000); // terrible, but only 10 of 50 requests after 15 of 60 s
    CanaryWindow.Verdict v = w.decide(15_000);
    assertThat(v).isInstanceOf(CanaryWindow.Verdict.KeepWaiting.class);
    assertThat(((CanaryWindow.Verdict.KeepWaiting) v).progress())
        .isEqualTo(0.25); // max(15/60, 10/50)
    assertThat(w.decide(60_000))
        .as("the window has passed")
        .isInstanceOf(CanaryWindow.Verdict.RollBack.class);
  }

  @Test
  void shouldDecideAsSoonAsTheCanaryHasItsMinimumRequests() {
    CanaryWindow w = window();
    w.traffic(CANARY, 50, 0, 0, 2_000);
    assertThat(w.decide(1)).isInstanceOf(CanaryWindow.Verdict.Promote.class);
  }

  @Test
  void shouldPromoteACanaryThatSawNoTrafficWhenTheWindowEnds() {
    CanaryWindow w = window();
    w.traffic(STABLE, 100, 0, 1, 2_000);
    assertThat(w.decide(60_000)).isInstanceOf(CanaryWindow.Verdict.Promote.class);
  }

  @Test
  void shouldCountMisfireEventsOrTrafficMisfiresButNotBoth() {
    CanaryWindow w = window();
    w.traffic(CANARY, 20, 2, 3, 2_000);
    for (int i = 0; i < 5; i++) {
      w.misfire(CANARY, MisfireReason.WRONG_ANSWER, 2_500); // 5 events, of which the node counted 3
    }
    assertThat(w.canary()).isEqualTo(new CanaryWindow.Tally(20, 2, 5));
    assertThat(w.canary().rate()).isEqualTo(7 / 20.0);
  }

  @Test
  void shouldIgnoreObservationsBeforeTheCanaryWentActiveAndOfOtherArtefacts() {
    CanaryWindow w = window();
    w.traffic(STABLE, 1000, 0, 900, 999); // before t=1000
    w.misfire(CANARY, MisfireReason.USER_FLAG, 500);
    w.traffic("x".repeat(64), 10, 10, 10, 2_000);
    w.traffic(STABLE, 10, 0, 1, 1_000);
    assertThat(w.stable()).isEqualTo(new CanaryWindow.Tally(10, 0, 1));
    assertThat(w.canary()).isEqualTo(new CanaryWindow.Tally(0, 0, 0));
  }

  @Test
  void shouldRefuseToCompareAnArtefactWithItself() {
    assertThatThrownBy(() -> new CanaryWindow(CANARY, CANARY, 0, 1, 1, 0))
        .isInstanceOf(IllegalArgumentException.class);
  }

  @Test
  void shouldCountATimeoutOnceAsAnErrorAndNotAlsoAsAMisfire() {
    CanaryWindow w = window();
    // a node that counted its 2 timeouts as errors and as misfires, beside 1 wrong answer, and sent
    // all 3 events
    w.traffic(CANARY, 10, 2, 3, 2_000);
    w.misfire(CANARY, MisfireReason.TIMEOUT, 2_100);
    w.misfire(CANARY, MisfireReason.TIMEOUT, 2_200);
    w.misfire(CANARY, MisfireReason.WRONG_ANSWER, 2_300);
    // a node that counts a timeout as an error only, and sends no event for it
    w.traffic(STABLE, 10, 2, 1, 2_000);
    w.misfire(STABLE, MisfireReason.WRONG_ANSWER, 2_300);

    assertThat(w.canary()).isEqualTo(new CanaryWindow.Tally(10, 2, 1));
    assertThat(w.stable()).isEqualTo(new CanaryWindow.Tally(10, 2, 1));
  }
}
