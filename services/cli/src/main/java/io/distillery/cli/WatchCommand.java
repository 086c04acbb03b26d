package io.distillery.cli;

import io.distillery.schemas.run.RunState;
import io.distillery.schemas.run.RunStatus;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

/** Live per-stage progress of one run (until it ends) or of all runs (until Ctrl-C, or {@code --until-idle}). */
@Command(name = "watch", mixinStandardHelpOptions = true, description = "Watch runs live: stages, percent, verdict.")
final class WatchCommand implements Callable<Integer> {

  @picocli.CommandLine.Spec picocli.CommandLine.Model.CommandSpec spec;

  private java.io.PrintWriter out() {
    return spec.commandLine().getOut();
  }

  @Mixin ClusterOptions cluster;

  @Parameters(arity = "0..1", description = "Run id (default: all runs)")
  String runId;

  @Option(names = "--plain", description = "One line per change, no terminal redraw")
  boolean plain;

  @Option(names = "--until-idle", description = "With no run id: exit when no run is in progress")
  boolean untilIdle;

  @Option(names = "--timeout", defaultValue = "0", description = "Give up after this many seconds (0 = never)")
  long timeoutSeconds;

  @Override
  public Integer call() {
    boolean ansi = !plain && System.console() != null;
    ProgressRenderer renderer = new ProgressRenderer(out(), ansi);
    long deadline = timeoutSeconds > 0 ? System.nanoTime() + timeoutSeconds * 1_000_000_000L : Long.MAX_VALUE;
    try (RunsView view = new RunsView(cluster.kafka())) {
      long lastDraw = 0;
      while (System.nanoTime() < deadline) {
        boolean[] changed = {false};
        view.poll(Duration.ofMillis(200), s -> {
          if (runId == null || runId.equals(s.getRunId())) {
            renderer.changed(s);
            changed[0] = true;
          }
        });
        List<RunState> shown = view.runs().values().stream()
            .filter(s -> runId == null || runId.equals(s.getRunId())).toList();
        if (ansi && changed[0] && System.nanoTime() - lastDraw > 100_000_000L) {
          renderer.redraw(shown);
          lastDraw = System.nanoTime();
        }
        if (runId != null && !shown.isEmpty() && shown.getFirst().getStatus() != RunStatus.RUNNING) {
          if (ansi) {
            renderer.redraw(shown);
          }
          return shown.getFirst().getStatus() == RunStatus.SUCCEEDED ? 0 : 1;
        }
        if (runId == null && untilIdle && !shown.isEmpty()
            && shown.stream().noneMatch(s -> s.getStatus() == RunStatus.RUNNING)) {
          return 0;
        }
      }
      out().println("watch: timed out");
      return 3;
    }
  }
}
