package io.distillery.stage;

import io.distillery.schemas.common.ArtefactRef;
import io.distillery.schemas.job.StageJob;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;

/**
 * Everything a stage may use for one job: its validated params, the run's model and the resolved
 * outputs of the nodes it runs after, a scratch directory for this attempt, a work directory that
 * survives attempts (for resumable checkpoints), a progress sink, and the memory this worker may
 * use for one job ({@code memoryBudgetBytes}: heap and native memory together, from the worker's
 * settings or its container's limit), which a stage plans against before it starts.
 */
public record StageContext<P extends Record>(
    StageJob job,
    P params,
    Path model,
    List<Input> inputs,
    Path scratch,
    Path workDir,
    ProgressSink progressSink,
    long memoryBudgetBytes) {

  public StageContext {
    inputs = List.copyOf(inputs);
    if (memoryBudgetBytes <= 0) {
      throw new IllegalArgumentException(
          "memoryBudgetBytes must be positive, got " + memoryBudgetBytes);
    }
  }

  /**
   * A directory shared by every job whose work directory lies beside this one (the artefact store's
   * {@code work/}), for caches keyed by their own content, so that another run of the same inputs
   * finds them (e.g. the distiller's teacher logits, keyed by teacher and data). Entries must be
   * written atomically: two jobs may fill the same one at once.
   */
  public Path sharedDir() {
    return workDir.resolveSibling("shared");
  }

  /** A context whose memory budget is this JVM's maximum heap (tests, tools). */
  public StageContext(
      StageJob job,
      P params,
      Path model,
      List<Input> inputs,
      Path scratch,
      Path workDir,
      ProgressSink progressSink) {
    this(
        job,
        params,
        model,
        inputs,
        scratch,
        workDir,
        progressSink,
        Runtime.getRuntime().maxMemory());
  }

  public void progress(double percent, String message) {
    progressSink.progress(percent, message, Map.of());
  }

  public void progress(double percent, String message, Map<String, Double> metrics) {
    progressSink.progress(percent, message, metrics);
  }

  /**
   * The checkpoint this stage works on: the last checkpoint artefact among the upstream nodes'
   * outputs (so chains like distill -> prune -> quantize transform the student, not the registered
   * model), else the run's registered model. Run-level inputs ({@code $run}, e.g. a deployed
   * student) are not considered; stages that want them ask for them.
   */
  public Path inputModel() {
    Path found = model;
    for (Input input : inputs) {
      if (input.node().equals("$run")) {
        continue;
      }
      for (Artefact a : input.artefacts()) {
        if (ArtefactFormats.CHECKPOINTS.contains(a.ref().getFormat())) {
          found = a.path();
        }
      }
    }
    return found;
  }

  /** All input artefacts of a format, in the order of the recipe's {@code after} list. */
  public List<Artefact> artefacts(String format) {
    return inputs.stream()
        .flatMap(i -> i.artefacts().stream())
        .filter(a -> a.ref().getFormat().equals(format))
        .toList();
  }

  /** The outputs and metrics of one upstream node. */
  public record Input(
      String node, String stage, List<Artefact> artefacts, Map<String, Double> metrics) {}

  /** An artefact reference with its local, verified path. */
  public record Artefact(ArtefactRef ref, Path path) {}
}
