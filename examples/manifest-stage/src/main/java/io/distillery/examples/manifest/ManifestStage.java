package io.distillery.examples.manifest;

import io.distillery.stage.ContentHash;
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
import java.util.stream.Stream;

/** Writes a sha256 manifest of the model's files: the README's example of a stage plugin. */
@StagePlugin(
    name = "manifest",
    params = ManifestStage.Params.class,
    description = "sha256 manifest of the model")
public final class ManifestStage implements Stage<ManifestStage.Params> {

  public record Params(String glob) {
    public Params {
      glob = glob == null ? "*" : glob;
    }
  }

  @Override
  public StageResult run(StageContext<Params> ctx) throws StageException {
    var matcher = ctx.model().getFileSystem().getPathMatcher("glob:" + ctx.params().glob());
    try (Stream<Path> walk = Files.walk(ctx.model())) {
      List<Path> files =
          walk.filter(Files::isRegularFile)
              .filter(f -> matcher.matches(f.getFileName()))
              .sorted()
              .toList();
      StringBuilder manifest = new StringBuilder();
      long bytes = 0;
      for (int i = 0; i < files.size(); i++) {
        Path f = files.get(i);
        manifest
            .append(ContentHash.fileSha(f))
            .append("  ")
            .append(ctx.model().relativize(f))
            .append('\n');
        bytes += Files.size(f);
        ctx.progress(100.0 * (i + 1) / files.size(), "hashed " + ctx.model().relativize(f));
      }
      Path out = Files.writeString(ctx.scratch().resolve("MANIFEST.sha256"), manifest);
      return StageResult.of(
          List.of(new StageResult.Output(out, "manifest")),
          Map.of("files", (double) files.size(), "bytes", (double) bytes));
    } catch (IOException e) {
      throw StageException.retryable("cannot read the model: " + e.getMessage(), e);
    }
  }
}
