package io.distillery.planner;

import io.distillery.runtime.service.ServicePlugin;
import java.time.Duration;
import java.util.Map;

/** Lets {@code distillery up} start the planner in-process. */
public final class PlannerService implements ServicePlugin {

  /**
   * The admission limit of the local stack (see {@link PlannerConfig#maxWaitingJobs()} and
   * bench/dispatch).
   */
  public static final int LOCAL_MAX_WAITING_JOBS = 3;

  @Override
  public String name() {
    return "planner";
  }

  @Override
  public int order() {
    return 10;
  }

  @Override
  public AutoCloseable start(Environment env) throws Exception {
    Map<String, String> settings = env.settings("planner");
    settings.put("DISTILLERY_PLANNER_STATE_DIR", env.runDir().resolve("planner-state").toString());
    if (!settings.containsKey("DISTILLERY_PLANNER_MAX_WAITING_JOBS")
        && !settings.containsKey("DISTILLERY_MAX_WAITING_JOBS")) {
      // one worker per stage in this process: a fixed pool, so a burst of registrations queues in
      // the planner
      settings.put("DISTILLERY_PLANNER_MAX_WAITING_JOBS", String.valueOf(LOCAL_MAX_WAITING_JOBS));
    }
    return PlannerApp.start(PlannerConfig.fromEnv(settings)).awaitRunning(Duration.ofSeconds(60));
  }
}
