package io.distillery.it.stages;

import io.distillery.stage.Stage;
import io.distillery.stage.StageContext;
import io.distillery.stage.StageException;
import io.distillery.stage.StagePlugin;
import io.distillery.stage.StageResult;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;

/**
 * Test plugin for long work: iterates sha256 over the inputs' text in {@code steps} steps, pausing
 * {@code pauseMs} after each so that tests can kill or restart things mid-stage. Writes the final
 * digest.
 */
@StagePlugin(name = "slow-hash", params = SlowHashStage.Params.class, cacheable = false)
public final class SlowHashStage implements Stage<SlowHashStage.Params> {

  public record Params(int steps, long pauseMs) {
    public Params {
      if (steps <= 0) {
        throw new IllegalArgumentException("steps must be positive");
      }
    }
  }

  @Override
  public StageResult run(StageContext<Params> ctx) throws StageException, InterruptedException {
    try {
      MessageDigest md = MessageDigest.getInstance("SHA-256");
      byte[] state = new byte[0];
      for (StageContext.Input i : ctx.inputs()) {
        for (StageContext.Artefact a : i.artefacts()) {
          Path t = Files.isDirectory(a.path()) ? a.path().resolve("text.txt") : a.path();
          state =
              md.digest(
                  (new String(state, StandardCharsets.ISO_8859_1) + Files.readString(t))
                      .getBytes(StandardCharsets.ISO_8859_1));
        }
      }
      for (int s = 1; s <= ctx.params().steps(); s++) {
        for (int r = 0; r < 1000; r++) {
          state = md.digest(state);
        }
        ctx.progress(
            100.0 * s / ctx.params().steps(),
            "step " + s + "/" + ctx.params().steps(),
            Map.of("step", (double) s));
        Thread.sleep(ctx.params().pauseMs());
      }
      Path dir = Files.createDirectories(ctx.scratch().resolve("slow"));
      Files.writeString(dir.resolve("text.txt"), HexFormat.of().formatHex(state));
      return StageResult.of(
          List.of(new StageResult.Output(dir, "text")),
          Map.of("steps", (double) ctx.params().steps()));
    } catch (IOException e) {
      throw StageException.retryable("I/O: " + e.getMessage(), e);
    } catch (java.security.NoSuchAlgorithmException e) {
      throw StageException.fatal("no SHA-256", e);
    }
  }
}
