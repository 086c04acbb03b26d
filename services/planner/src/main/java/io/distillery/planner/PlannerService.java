package io.distillery.planner;

import io.distillery.platform.service.ServicePlugin;
import java.time.Duration;
import java.util.Map;

/** Lets {@code distillery up} start the planner in-process. */
public final class PlannerService implements ServicePlugin {

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
    return PlannerApp.start(PlannerConfig.fromEnv(settings)).awaitRunning(Duration.ofSeconds(60));
  }
}
