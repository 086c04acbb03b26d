package io.distillery.it.stages;

import io.distillery.stage.Stage;
import io.distillery.stage.StageContext;
import io.distillery.stage.StageException;
import io.distillery.stage.StagePlugin;
import io.distillery.stage.StageResult;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;

/**
 * Test plugin (fan-in): joins the text.txt of every input, in recipe order, one per line, tagged
 * with the node.
 */
@StagePlugin(name = "merge", params = MergeStage.Params.class)
public final class MergeStage implements Stage<MergeStage.Params> {

  public record Params(String separator) {
    public Params {
      if (separator == null) {
        separator = "\n";
      }
    }
  }

  @Override
  public StageResult run(StageContext<Params> ctx) throws StageException {
    StringBuilder sb = new StringBuilder();
    try {
      for (StageContext.Input i : ctx.inputs()) {
        for (StageContext.Artefact a : i.artefacts()) {
          sb.append(i.node())
              .append('=')
              .append(Files.readString(a.path().resolve("text.txt")))
              .append(ctx.params().separator());
        }
      }
      Path out = ctx.scratch().resolve("merged.txt");
      Files.writeString(out, sb);
      return StageResult.of(
          List.of(new StageResult.Output(out, "text")),
          Map.of("inputs", (double) ctx.inputs().size()));
    } catch (IOException e) {
      throw StageException.fatal("input is not a text artefact: " + e.getMessage(), e);
    }
  }
}
