package io.distillery.bench;

import io.distillery.platform.stage.Stage;
import io.distillery.platform.stage.StageContext;
import io.distillery.platform.stage.StagePlugin;
import io.distillery.platform.stage.StageResult;
import java.util.List;
import java.util.Map;

/** A stage that does nothing, so the dispatch benchmark measures the platform alone. */
@StagePlugin(name = "noop", params = NoopStage.Params.class, cacheable = false)
public final class NoopStage implements Stage<NoopStage.Params> {

  public record Params() {}

  @Override
  public StageResult run(StageContext<Params> ctx) {
    return StageResult.of(List.of(), Map.of());
  }
}
