package io.distillery.runtime.kafka;

import io.distillery.stage.StageRegistry;
import java.util.regex.Pattern;

/** The topic names of the architecture (see ARCHITECTURE.md), in one place. */
public final class Topics {
  public static final String MODELS_REGISTERED = "distillery.models.registered";
  public static final String JOB_EVENTS = "distillery.job.events";
  public static final String RUNS = "distillery.runs";
  public static final String DEPLOYMENTS = "distillery.deployments";
  public static final String MISFIRES = "distillery.misfires";

  /**
   * Request counts per deployment, node and artefact ({@code ServingTraffic}): the denominator of
   * misfire rates.
   */
  public static final String SERVING_TRAFFIC = "distillery.serving.traffic";

  public static final String JOBS_PREFIX = "distillery.jobs.";
  public static final String DLQ_PREFIX = "distillery.dlq.";

  /**
   * A stage name is a topic suffix: lower-case words joined by '-', as in {@code my-lora-merger}.
   */
  public static final Pattern STAGE_NAME = StageRegistry.STAGE_NAME;

  private Topics() {}

  public static String jobs(String stage) {
    if (!STAGE_NAME.matcher(stage).matches()) {
      throw new IllegalArgumentException(
          "invalid stage name '" + stage + "': use lower-case letters, digits and '-'");
    }
    return JOBS_PREFIX + stage;
  }

  public static String dlq(String topic) {
    return DLQ_PREFIX + topic;
  }

  /** The stage served by a jobs topic, or null if the topic is not a jobs topic. */
  public static String stageOf(String topic) {
    return topic.startsWith(JOBS_PREFIX) ? topic.substring(JOBS_PREFIX.length()) : null;
  }
}
