package io.distillery.cli;

import io.distillery.schemas.run.RunState;
import io.distillery.schemas.run.RunStatus;
import java.io.PrintWriter;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.Callable;
import java.util.function.BooleanSupplier;
import java.util.function.Predicate;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

/**
 * Live per-stage progress of one run (until it ends) or of all runs (until Ctrl-C, or {@code
 * --until-idle}).
 */
@Command(
    name = "watch",
    mixinStandardHelpOptions = true,
    description = "Watch runs live: stages, percent, verdict.")
final class WatchCommand implements Callable<Integer> {

  /** {@link #follow}'s answer when it gave up or was stopped before the run ended. */
  static final int NOT_FINISHED = 3;

  @picocli.CommandLine.Spec picocli.CommandLine.Model.CommandSpec spec;

  private PrintWriter out() {
    return spec.commandLine().getOut();
  }

  @Mixin ClusterOptions cluster;

  @Parameters(arity = "0..1", description = "Run id (default: all runs)")
  String runId;

  @Option(names = "--plain", description = "One line per change, no terminal redraw")
  boolean plain;

  @Option(names = "--until-idle", description = "With no run id: exit when no run is in progress")
  boolean untilIdle;

  @Option(
      names = "--timeout",
      defaultValue = "0",
      description = "Give up after this many seconds (0 = never)")
  long timeoutSeconds;

  @Override
  public Integer call() {
    boolean terminal = !plain && System.console() != null;
    ProgressRenderer renderer =
        new ProgressRenderer(out(), terminal, ProgressRenderer.width(System.getenv()));
    long deadline =
        timeoutSeconds > 0 ? System.nanoTime() + timeoutSeconds * 1_000_000_000L : Long.MAX_VALUE;
    try (RunsView view = new RunsView(cluster.kafka())) {
      int code =
          follow(
              view,
              renderer,
              runId == null ? s -> true : s -> runId.equals(s.getRunId()),
              runId != null,
              untilIdle,
              () -> System.nanoTime() >= deadline);
      if (code == NOT_FINISHED) {
        out().println("watch: timed out");
      }
      return code;
    }
  }

  /**
   * Draws the runs {@code shown} picks as they change, until {@code stop} says so ({@value
   * #NOT_FINISHED}), or, with {@code oneRun}, until that run has ended (0 when it SUCCEEDED, else
   * 1), or, with {@code untilIdle}, until no run it shows is in progress (0).
   */
  static int follow(
      RunsView view,
      ProgressRenderer renderer,
      Predicate<RunState> shown,
      boolean oneRun,
      boolean untilIdle,
      BooleanSupplier stop) {
    long lastDraw = 0;
    while (!stop.getAsBoolean()) {
      boolean[] changed = {false};
      view.poll(
          Duration.ofMillis(200),
          s -> {
            if (shown.test(s)) {
              renderer.changed(s);
              changed[0] = true;
            }
          });
      List<RunState> runs = view.runs().values().stream().filter(shown).toList();
      boolean over =
          !runs.isEmpty() && runs.stream().noneMatch(s -> s.getStatus() == RunStatus.RUNNING);
      if (renderer.terminal()
          && changed[0]
          && (over || System.nanoTime() - lastDraw > 100_000_000L)) {
        renderer.redraw(runs);
        lastDraw = System.nanoTime();
      }
      if (oneRun && over) {
        return runs.getFirst().getStatus() == RunStatus.SUCCEEDED ? 0 : 1;
      }
      if (untilIdle && over) {
        return 0;
      }
    }
    return NOT_FINISHED;
  }
}
