package io.distillery.model.stream;

import io.distillery.model.config.LlamaConfig;
import io.distillery.stage.ProgressSink;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.HexFormat;
import java.util.Locale;
import java.util.Map;

/**
 * What every stage that runs a job on the {@link LayerStreamer} reports and keys the same way: its
 * per-layer progress line with an ETA, and the fingerprint that lets a resumed attempt reuse only
 * the finished layers of the same computation.
 */
public final class StreamedJobs {

  private StreamedJobs() {}

  /**
   * Progress as "layer 12/32: gptq mlp.down_proj (37%, eta 4m10s)", the percentage spread over
   * 2..98 of the job, with the number of finished layers as the metric {@code layers_done}. The ETA
   * counts from the first report, so layers resumed from an earlier attempt do not shorten it.
   */
  public static LayerStreamer.Progress layerProgress(ProgressSink sink, long startedNanos) {
    double[] baseline = {-1};
    return (layer, layers, step, fraction) -> {
      if (baseline[0] < 0) {
        baseline[0] = fraction;
      }
      double elapsed = (System.nanoTime() - startedNanos) / 1e9;
      String eta =
          fraction > baseline[0] + 1e-9
              ? ", eta " + duration(elapsed / (fraction - baseline[0]) * (1 - fraction))
              : "";
      sink.progress(
          2 + 96 * fraction,
          String.format(
              Locale.ROOT,
              "layer %d/%d: %s (%.0f%%%s)",
              layer + 1,
              layers,
              step,
              100 * fraction,
              eta),
          Map.of("layers_done", (double) (int) Math.floor(fraction * layers + 1e-9)));
    };
  }

  /**
   * SHA-256 of what a streamed job computes: the stage's params, anything else it depends on
   * ({@code extra}), the input model's path and config, and the calibration token ids (null: none).
   */
  public static String fingerprint(
      String params, String extra, Path model, LlamaConfig config, CalibrationTokens tokens) {
    MessageDigest digest;
    try {
      digest = MessageDigest.getInstance("SHA-256");
    } catch (NoSuchAlgorithmException e) {
      throw new IllegalStateException("no SHA-256 in this JVM", e);
    }
    digest.update(params.getBytes(StandardCharsets.UTF_8));
    digest.update(extra.getBytes(StandardCharsets.UTF_8));
    digest.update(model.toAbsolutePath().toString().getBytes(StandardCharsets.UTF_8));
    digest.update(config.toJson().getBytes(StandardCharsets.UTF_8));
    if (tokens != null) {
      ByteBuffer buffer = ByteBuffer.allocate(4);
      for (int[] sample : tokens.samples()) {
        digest.update(buffer.clear().putInt(-sample.length).flip());
        for (int id : sample) {
          digest.update(buffer.clear().putInt(id).flip());
        }
      }
    }
    return HexFormat.of().formatHex(digest.digest());
  }

  /** "42s", "4m10s", "2h05m". */
  public static String duration(double seconds) {
    long s = Math.round(seconds);
    return s >= 3600
        ? String.format(Locale.ROOT, "%dh%02dm", s / 3600, s % 3600 / 60)
        : s >= 60 ? String.format(Locale.ROOT, "%dm%02ds", s / 60, s % 60) : s + "s";
  }
}
