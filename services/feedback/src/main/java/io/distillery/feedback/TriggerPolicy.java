package io.distillery.feedback;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.UUID;

/**
 * When a window of misfires is an incident that starts a re-distillation run: hopping windows of
 * {@code window} every {@code advance}; a window trips when it holds at least {@code minMisfires}
 * distinct misfires and its rate (distinct misfires / requests) is at least {@code minRate}; a
 * tripped window fires unless the deployment is cooling down from its last trigger (event time:
 * window end within {@code coolDown} of the last trigger's window end) or has used its {@code
 * maxRunsPerDay} runs of that UTC day.
 */
record TriggerPolicy(
    Duration window,
    Duration advance,
    Duration grace,
    double minRate,
    long minMisfires,
    Duration coolDown,
    int maxRunsPerDay,
    Duration idleClose) {

  static final long DAY_MS = Duration.ofDays(1).toMillis();

  enum Decision {
    QUIET,
    COOL_DOWN,
    DAILY_CAP,
    FIRE
  }

  static TriggerPolicy of(FeedbackConfig c) {
    return new TriggerPolicy(
        c.window(),
        c.advance(),
        c.grace(),
        c.minRate(),
        c.minMisfires(),
        c.coolDown(),
        c.maxRunsPerDay(),
        c.idleClose());
  }

  /**
   * Starts of the windows holding {@code ts}: start <= ts < start + window, start a multiple of
   * advance, >= 0.
   */
  List<Long> windowStarts(long ts) {
    long size = window.toMillis();
    long adv = advance.toMillis();
    List<Long> starts = new ArrayList<>();
    for (long s = Math.floorDiv(ts, adv) * adv; s > ts - size && s >= 0; s -= adv) {
      starts.add(s);
    }
    return starts.reversed();
  }

  long end(long start) {
    return start + window.toMillis();
  }

  boolean tripped(MisfireWindow w) {
    return w.requests() > 0 && w.misfires() >= minMisfires && w.rate() >= minRate;
  }

  /**
   * A window is judged once {@code now} has passed its end plus the grace; {@code now} is the
   * deployment's event time, or on the wall-clock tick the later of event time and wall clock minus
   * {@code idleClose}.
   */
  boolean due(MisfireWindow w, long now) {
    return w.end() + grace.toMillis() <= now;
  }

  Decision decide(TriggerState state, MisfireWindow w) {
    if (!tripped(w)) {
      return Decision.QUIET;
    }
    if (state.lastTriggerEnd() >= 0 && w.end() < state.lastTriggerEnd() + coolDown.toMillis()) {
      return Decision.COOL_DOWN;
    }
    if (state.runsOn(day(w.end())) >= maxRunsPerDay) {
      return Decision.DAILY_CAP;
    }
    return Decision.FIRE;
  }

  /**
   * Until when (epoch millis) windows of this deployment are part of its last incident; -1 without
   * one.
   */
  long coolDownUntil(TriggerState state) {
    return state.lastTriggerEnd() < 0 ? -1 : state.lastTriggerEnd() + coolDown.toMillis();
  }

  static long day(long epochMillis) {
    return Math.floorDiv(epochMillis, DAY_MS);
  }

  /**
   * The run of one incident: the same deployment and window start give the same run id, on every
   * replay.
   */
  static String runId(String deploymentId, long windowStart) {
    return UUID.nameUUIDFromBytes(
            ("distillery-feedback|" + deploymentId + "|" + windowStart)
                .getBytes(StandardCharsets.UTF_8))
        .toString();
  }
}
