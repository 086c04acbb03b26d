package io.distillery.serving;

import io.distillery.schemas.misfire.MisfireReason;

/**
 * Which answers go wrong, without a model or Kafka: an answer whose confidence (mean
 * log-probability of its tokens) is below the threshold escalates to the teacher; and each request
 * is at most one misfire, about the deployed artefact that answered: a {@code verify} mismatch of
 * its answer (WRONG_ANSWER, expected = verify) wins over an escalation (ESCALATED, expected = the
 * teacher's answer), which wins over a low-confidence answer with no teacher answer to show
 * (LOW_CONFIDENCE). A timeout is none of these: the node failed, it counts as an error.
 *
 * @param confidenceThreshold answers below it escalate; NaN confidences never do
 */
public record MisfirePolicy(double confidenceThreshold) {

  /** A misfire to record: why, and the answer that was expected (null when unknown). */
  public record Misfiring(MisfireReason reason, String expected) {}

  /** Whether an answer this confident goes to the teacher. */
  public boolean escalates(double confidence) {
    return confidence < confidenceThreshold;
  }

  /**
   * The misfire of one answered request, or null when it went right.
   *
   * @param answer what the deployed artefact answered
   * @param confidence its confidence
   * @param verify the exact answer the client expects, or null
   * @param teacherAnswer what the teacher answered when the request escalated and the teacher
   *     finished, else null
   */
  public Misfiring judge(String answer, double confidence, String verify, String teacherAnswer) {
    if (verify != null && !verify.equals(answer)) {
      return new Misfiring(MisfireReason.WRONG_ANSWER, verify);
    }
    if (teacherAnswer != null) {
      return new Misfiring(MisfireReason.ESCALATED, teacherAnswer);
    }
    if (escalates(confidence)) {
      return new Misfiring(MisfireReason.LOW_CONFIDENCE, null);
    }
    return null;
  }
}
