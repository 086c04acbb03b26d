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
import java.util.Locale;
import java.util.Map;

/** Test plugin: upper-cases or reverses the text.txt of every input. */
@StagePlugin(name = "transform", params = TransformStage.Params.class)
public final class TransformStage implements Stage<TransformStage.Params> {

  public record Params(String mode) {
    public Params {
      if (!"upper".equals(mode) && !"reverse".equals(mode)) {
        throw new IllegalArgumentException("mode must be 'upper' or 'reverse', got " + mode);
      }
    }
  }

  @Override
  public StageResult run(StageContext<Params> ctx) throws StageException {
    StringBuilder in = new StringBuilder();
    try {
      for (StageContext.Input i : ctx.inputs()) {
        for (StageContext.Artefact a : i.artefacts()) {
          Path t = Files.isDirectory(a.path()) ? a.path().resolve("text.txt") : a.path();
          if (Files.exists(t)) {
            in.append(Files.readString(t));
          }
        }
      }
      String out =
          ctx.params().mode().equals("upper")
              ? in.toString().toUpperCase(Locale.ROOT)
              : new StringBuilder(in).reverse().toString();
      ctx.progress(50, "transformed " + in.length() + " chars");
      Path dir = Files.createDirectories(ctx.scratch().resolve(ctx.params().mode()));
      Files.writeString(dir.resolve("text.txt"), out);
      return StageResult.of(
          List.of(new StageResult.Output(dir, "text")), Map.of("chars", (double) out.length()));
    } catch (IOException e) {
      throw StageException.retryable("I/O: " + e.getMessage(), e);
    }
  }
}
