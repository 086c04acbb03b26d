package io.distillery.it.stages;

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

/**
 * Test plugin: writes "sha256 path" for every file of the run's model, and the text of every .txt
 * file.
 */
@StagePlugin(name = "hash", params = HashStage.Params.class, description = "hash the model's files")
public final class HashStage implements Stage<HashStage.Params> {

  public record Params(String algorithm) {
    public Params {
      if (algorithm == null) {
        algorithm = "sha256";
      }
      if (!algorithm.equals("sha256")) {
        throw new IllegalArgumentException("algorithm must be sha256, got " + algorithm);
      }
    }
  }

  @Override
  public StageResult run(StageContext<Params> ctx) throws StageException {
    try {
      List<Path> files;
      try (Stream<Path> s = Files.walk(ctx.model())) {
        files = s.filter(Files::isRegularFile).sorted().toList();
      }
      StringBuilder manifest = new StringBuilder();
      StringBuilder text = new StringBuilder();
      for (int i = 0; i < files.size(); i++) {
        Path f = files.get(i);
        manifest
            .append(ContentHash.fileSha(f))
            .append("  ")
            .append(ctx.model().relativize(f))
            .append('\n');
        if (f.toString().endsWith(".txt")) {
          text.append(Files.readString(f));
        }
        ctx.progress(100.0 * (i + 1) / files.size(), "hashed " + (i + 1) + "/" + files.size());
      }
      Path out = Files.createDirectories(ctx.scratch().resolve("hashed"));
      Files.writeString(out.resolve("manifest.txt"), manifest);
      Files.writeString(out.resolve("text.txt"), text);
      return StageResult.of(
          List.of(new StageResult.Output(out, "hashed")), Map.of("files", (double) files.size()));
    } catch (IOException e) {
      throw StageException.retryable("cannot read the model: " + e.getMessage(), e);
    }
  }
}
