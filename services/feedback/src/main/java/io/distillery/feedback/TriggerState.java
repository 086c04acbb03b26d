package io.distillery.feedback;

import java.util.ArrayList;
import java.util.List;

/**
 * Per deployment: how far windows have been judged ({@code closedUpTo}, the end of the last judged
 * window; events that only fall into judged windows are late and dropped), the newest event time
 * seen, the cool-down anchor, the runs of the current UTC day, and the latest triggers.
 *
 * @param lastTriggerEnd end of the window of the last trigger, -1 if none
 */
record TriggerState(
    String deploymentId,
    long maxEventTs,
    long closedUpTo,
    long lastTriggerEnd,
    long day,
    int runsToday,
    long suppressedByCoolDown,
    long suppressedByDailyCap,
    List<Trigger> triggers) {

  static final int HISTORY = 20;

  TriggerState {
    triggers = List.copyOf(triggers);
  }

  static TriggerState initial(String deploymentId) {
    return new TriggerState(
        deploymentId, Long.MIN_VALUE, Long.MIN_VALUE, -1, -1, 0, 0, 0, List.of());
  }

  TriggerState seen(long ts) {
    return new TriggerState(
        deploymentId,
        Math.max(maxEventTs, ts),
        closedUpTo,
        lastTriggerEnd,
        day,
        runsToday,
        suppressedByCoolDown,
        suppressedByDailyCap,
        triggers);
  }

  TriggerState closed(long end) {
    return new TriggerState(
        deploymentId,
        maxEventTs,
        Math.max(closedUpTo, end),
        lastTriggerEnd,
        day,
        runsToday,
        suppressedByCoolDown,
        suppressedByDailyCap,
        triggers);
  }

  TriggerState coolingDown() {
    return new TriggerState(
        deploymentId,
        maxEventTs,
        closedUpTo,
        lastTriggerEnd,
        day,
        runsToday,
        suppressedByCoolDown + 1,
        suppressedByDailyCap,
        triggers);
  }

  TriggerState capped() {
    return new TriggerState(
        deploymentId,
        maxEventTs,
        closedUpTo,
        lastTriggerEnd,
        day,
        runsToday,
        suppressedByCoolDown,
        suppressedByDailyCap + 1,
        triggers);
  }

  /** Runs counted so far on {@code day}: the counter restarts on a new UTC day. */
  int runsOn(long day) {
    return day == this.day ? runsToday : 0;
  }

  TriggerState with(Trigger t, long day) {
    List<Trigger> list = new ArrayList<>(triggers);
    list.add(t);
    if (list.size() > HISTORY) {
      list = list.subList(list.size() - HISTORY, list.size());
    }
    int runs = runsOn(day) + (t.outcome() == Trigger.Outcome.FIRED ? 1 : 0);
    return new TriggerState(
        deploymentId,
        maxEventTs,
        closedUpTo,
        t.windowEnd(),
        day,
        runs,
        suppressedByCoolDown,
        suppressedByDailyCap,
        list);
  }
}
