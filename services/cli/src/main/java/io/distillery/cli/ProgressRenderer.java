package io.distillery.cli;

import io.distillery.schemas.run.RunState;
import io.distillery.schemas.run.StageState;
import java.io.PrintWriter;
import java.util.Collection;
import java.util.HashMap;
import java.util.Locale;
import java.util.Map;
import java.util.stream.Collectors;

/**
 * Draws runs for {@code watch}: on a terminal, a redrawn block of progress bars; elsewhere (pipes, CI logs, tests) one
 * line per change of a stage's status or whole percent.
 */
final class ProgressRenderer {

  private static final int BAR = 24;
  private final PrintWriter out;
  private final boolean ansi;
  private final Map<String, String> lastLine = new HashMap<>();

  ProgressRenderer(PrintWriter out, boolean ansi) {
    this.out = out;
    this.ansi = ansi;
  }

  /** Terminal mode: redraws every run in {@code runs}. */
  void redraw(Collection<RunState> runs) {
    StringBuilder sb = new StringBuilder("\033[H\033[2J");
    for (RunState r : runs) {
      sb.append(block(r));
    }
    out.print(sb);
    out.flush();
  }

  /** Line mode: prints what changed in {@code r}. */
  void changed(RunState r) {
    if (ansi) {
      return;
    }
    for (StageState s : r.getStages()) {
      String line = String.format(Locale.ROOT, "%s %-10s %-12s %-10s %3.0f%% %s%s", shortId(r.getRunId()), s.getNode(),
          s.getStage(), s.getStatus(), s.getPercent(), s.getMessage(), metrics(s.getMetrics()));
      String key = r.getRunId() + "/" + s.getNode();
      String sig = s.getStatus() + ":" + Math.round(s.getPercent()) + ":" + s.getAttempt();
      if (!sig.equals(lastLine.put(key, sig))) {
        out.println(line);
      }
    }
    if (r.getStatus() != io.distillery.schemas.run.RunStatus.RUNNING && lastLine.put(r.getRunId(), "done") == null) {
      out.println(verdict(r));
    }
    out.flush();
  }

  static String verdict(RunState r) {
    return "run " + r.getRunId() + " " + r.getStatus() + (r.getVerdict() == null ? "" : " — " + r.getVerdict())
        + (r.getReason() == null ? "" : "\n  reason: " + r.getReason());
  }

  static String block(RunState r) {
    StringBuilder sb = new StringBuilder();
    sb.append(String.format(Locale.ROOT, "run %s  %s  %s%n", r.getRunId(), r.getRecipeName(), r.getStatus()));
    for (StageState s : r.getStages()) {
      int filled = (int) Math.round(s.getPercent() / 100.0 * BAR);
      sb.append(String.format(Locale.ROOT, "  %-10s %-12s [%s%s] %3.0f%%  %-10s %s%s%n", s.getNode(), s.getStage(),
          "#".repeat(filled), ".".repeat(BAR - filled), s.getPercent(), s.getStatus(), s.getMessage(),
          metrics(s.getMetrics())));
    }
    if (r.getStatus() != io.distillery.schemas.run.RunStatus.RUNNING) {
      sb.append("  ").append(verdict(r)).append(System.lineSeparator());
    }
    return sb.append(System.lineSeparator()).toString();
  }

  private static String metrics(Map<String, Double> m) {
    if (m.isEmpty()) {
      return "";
    }
    return "  " + new java.util.TreeMap<>(m).entrySet().stream().limit(6)
        .map(e -> e.getKey() + "=" + String.format(Locale.ROOT, "%.4g", e.getValue()))
        .collect(Collectors.joining(" "));
  }

  private static String shortId(String runId) {
    return runId.length() > 8 ? runId.substring(0, 8) : runId;
  }
}
