package io.distillery.stage;

import java.nio.file.Path;
import java.util.List;
import java.util.Map;

/**
 * What a stage produced: files or directories (the host moves them into the content-addressed
 * store) and metrics.
 */
public record StageResult(List<Output> outputs, Map<String, Double> metrics) {

  public StageResult {
    outputs = List.copyOf(outputs);
    metrics = Map.copyOf(metrics);
  }

  public static StageResult of(List<Output> outputs, Map<String, Double> metrics) {
    return new StageResult(outputs, metrics);
  }

  /**
   * One output: a file or directory under the scratch dir, and its format (e.g. hf-llama,
   * calibration, report).
   */
  public record Output(Path path, String format) {}
}
