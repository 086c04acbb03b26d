package io.distillery.serving;

import static org.assertj.core.api.Assertions.assertThat;

import io.distillery.schemas.misfire.MisfireReason;
import io.distillery.serving.MisfirePolicy.Misfiring;
import org.junit.jupiter.api.Test;

/**
 * One misfire per request at most, in the order WRONG_ANSWER, ESCALATED, LOW_CONFIDENCE; threshold
 * -1.0.
 */
class MisfirePolicyTest {

  final MisfirePolicy policy = new MisfirePolicy(-1.0);

  @Test
  void shouldEscalateOnlyBelowTheThreshold() {
    assertThat(policy.escalates(-1.5)).isTrue();
    assertThat(policy.escalates(-1.0)).isFalse();
    assertThat(policy.escalates(-0.2)).isFalse();
    assertThat(policy.escalates(Double.NaN)).isFalse();
  }

  @Test
  void shouldFindNothingWrongWithAConfidentAnswerThatMatchesVerify() {
    assertThat(policy.judge("4", -0.1, "4", null)).isNull();
    assertThat(policy.judge("4", -0.1, null, null)).isNull();
  }

  @Test
  void shouldCallAVerifyMismatchAWrongAnswerEvenWhenItEscalated() {
    assertThat(policy.judge("5", -0.1, "4", null))
        .isEqualTo(new Misfiring(MisfireReason.WRONG_ANSWER, "4"));
    assertThat(policy.judge("5", -3.0, "4", "4"))
        .isEqualTo(new Misfiring(MisfireReason.WRONG_ANSWER, "4"));
  }

  @Test
  void shouldCallAnEscalationEscalatedWithTheTeachersAnswer() {
    assertThat(policy.judge("5", -3.0, null, "4"))
        .isEqualTo(new Misfiring(MisfireReason.ESCALATED, "4"));
    // verify agreed with the student: the escalation is still recorded, with what the teacher said
    assertThat(policy.judge("4", -3.0, "4", "4"))
        .isEqualTo(new Misfiring(MisfireReason.ESCALATED, "4"));
  }

  @Test
  void shouldCallALowConfidenceAnswerWithoutATeacherAnswerLowConfidence() {
    assertThat(policy.judge("5", -3.0, null, null))
        .isEqualTo(new Misfiring(MisfireReason.LOW_CONFIDENCE, null));
  }
}
