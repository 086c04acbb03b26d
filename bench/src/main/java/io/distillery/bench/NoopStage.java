package io.distillery.bench;

import io.distillery.stage.Stage;
import io.distillery.stage.StageContext;
import io.distillery.stage.StagePlugin;
import io.distillery.stage.StageResult;
import java.util.List;
import java.util.Map;

/**
 * Stages that do nothing, so the dispatch benchmark measures the platform alone. Three names (three
 * topics, three worker groups), as a real 3-stage recipe has: a job of stage b never queues behind
 * jobs of stage a.
 */
public abstract class NoopStage implements Stage<NoopStage.Params> {

  public record Params() {}

  @Override
  public StageResult run(StageContext<Params> ctx) {
    return StageResult.of(List.of(), Map.of());
  }

  @StagePlugin(name = "noop-a", params = Params.class, cacheable = false)
  public static final class A extends NoopStage {}

  @StagePlugin(name = "noop-b", params = Params.class, cacheable = false)
  public static final class B extends NoopStage {}

  @StagePlugin(name = "noop-c", params = Params.class, cacheable = false)
  public static final class C extends NoopStage {}
}
