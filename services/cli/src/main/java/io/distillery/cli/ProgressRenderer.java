package io.distillery.cli;

import io.distillery.schemas.run.RunState;
import io.distillery.schemas.run.RunStatus;
import io.distillery.schemas.run.StageState;
import java.io.PrintWriter;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.stream.Collectors;

/**
 * Draws runs for {@code watch} and {@code up}: one line per stage. On a terminal the lines of the
 * runs in progress are redrawn in place (the cursor goes back up over them; nothing above is
 * cleared), each cut to the terminal's width at a word so that none wraps; a finished run is drawn
 * a last time with its result and left above. Elsewhere (pipes, CI logs, {@code --verbose} beside
 * the logs) one line per change of a stage's status or whole percent, wrapped at words to the
 * width.
 */
final class ProgressRenderer {

  /** The width when the terminal does not say ({@code COLUMNS} unset). */
  static final int DEFAULT_WIDTH = 100;

  private static final int MIN_WIDTH = 40;
  private static final int BAR = 20;
  private static final String CONTINUATION = "    ";

  private final PrintWriter out;
  private final boolean terminal;
  private final int width;
  private final Map<String, String> lastLine = new HashMap<>();
  private final Set<String> finished = new HashSet<>();
  private int liveLines;

  ProgressRenderer(PrintWriter out, boolean terminal, int width) {
    this.out = out;
    this.terminal = terminal;
    this.width = Math.max(MIN_WIDTH, width);
  }

  /** The console's width: {@code COLUMNS} when it holds a number, else {@value #DEFAULT_WIDTH}. */
  static int width(Map<String, String> env) {
    String columns = env.get("COLUMNS");
    if (columns != null) {
      try {
        int w = Integer.parseInt(columns.trim());
        if (w > 0) {
          return w;
        }
      } catch (NumberFormatException e) {
        // not a number: the default
      }
    }
    return DEFAULT_WIDTH;
  }

  boolean terminal() {
    return terminal;
  }

  /**
   * Terminal mode: redraws the runs in progress in place. A run that has finished since the last
   * redraw is drawn once more, above those in progress, with its result, and stays on the screen as
   * it is.
   */
  void redraw(Collection<RunState> runs) {
    List<String> done = new ArrayList<>();
    List<String> live = new ArrayList<>();
    for (RunState r : runs) {
      if (finished.contains(r.getRunId())) {
        continue;
      }
      boolean over = r.getStatus() != RunStatus.RUNNING;
      for (String line : lines(r)) {
        (over ? done : live).add(fit(line, width - 1));
      }
      if (over) {
        finished.add(r.getRunId());
      }
    }
    StringBuilder sb = new StringBuilder();
    if (liveLines > 0) {
      sb.append("\r\033[").append(liveLines).append('A'); // back to the first line drawn last time
    }
    for (String line : done) {
      sb.append("\033[2K").append(line).append('\n');
    }
    for (String line : live) {
      sb.append("\033[2K").append(line).append('\n');
    }
    sb.append("\033[J"); // what the last drawing had below
    liveLines = live.size();
    out.print(sb);
    out.flush();
  }

  /** Line mode: prints what changed in {@code r}, and its result once it has finished. */
  void changed(RunState r) {
    if (terminal) {
      return;
    }
    for (StageState s : r.getStages()) {
      String key = r.getRunId() + "/" + s.getNode();
      String sig = s.getStatus() + ":" + Math.round(s.getPercent()) + ":" + s.getAttempt();
      if (!sig.equals(lastLine.put(key, sig))) {
        print(
            String.format(
                Locale.ROOT,
                "%s %-10s %-12s %-10s %3.0f%% %s%s",
                shortId(r.getRunId()),
                s.getNode(),
                s.getStage(),
                s.getStatus(),
                s.getPercent(),
                s.getMessage(),
                metrics(s.getMetrics())));
      }
    }
    if (r.getStatus() != RunStatus.RUNNING && lastLine.put(r.getRunId(), "done") == null) {
      verdict(r).forEach(this::print);
    }
    out.flush();
  }

  private void print(String line) {
    wrap(line, width).forEach(out::println);
  }

  /** The result of a finished run: its status and verdict, and why it failed if it did. */
  static List<String> verdict(RunState r) {
    List<String> lines = new ArrayList<>();
    lines.add(
        "run "
            + r.getRunId()
            + " "
            + r.getStatus()
            + (r.getVerdict() == null ? "" : " - " + r.getVerdict()));
    if (r.getReason() != null) {
      lines.add("  reason: " + r.getReason());
    }
    return lines;
  }

  /**
   * {@code status}: the run, one line per stage, wrapped at words to {@code width}, ending with an
   * empty line.
   */
  static String block(RunState r, int width) {
    StringBuilder sb = new StringBuilder();
    for (String line : lines(r)) {
      for (String part : wrap(line, Math.max(MIN_WIDTH, width))) {
        sb.append(part).append(System.lineSeparator());
      }
    }
    return sb.append(System.lineSeparator()).toString();
  }

  /** A run as lines: a header, one line per stage, and the result once it has finished. */
  static List<String> lines(RunState r) {
    List<String> lines = new ArrayList<>();
    // the status before the recipe's name: a line cut to a narrow terminal keeps it
    lines.add(
        String.format(
            Locale.ROOT, "run %s  %s  %s", r.getRunId(), r.getStatus(), r.getRecipeName()));
    for (StageState s : r.getStages()) {
      int filled = (int) Math.round(Math.max(0, Math.min(100, s.getPercent())) / 100.0 * BAR);
      lines.add(
          String.format(
                  Locale.ROOT,
                  "  %-10s %-12s [%s%s] %3.0f%%  %-10s %s%s",
                  s.getNode(),
                  s.getStage(),
                  "#".repeat(filled),
                  ".".repeat(BAR - filled),
                  s.getPercent(),
                  s.getStatus(),
                  s.getMessage(),
                  metrics(s.getMetrics()))
              .stripTrailing());
    }
    if (r.getStatus() != RunStatus.RUNNING) {
      verdict(r).forEach(v -> lines.add("  " + v));
    }
    return lines;
  }

  /**
   * {@code line} cut to at most {@code width} characters at the last space that fits, ending with
   * "..." when something was cut; a line without a space there is cut at the width.
   */
  static String fit(String line, int width) {
    if (line.length() <= width) {
      return line;
    }
    int room = width - 3;
    int cut = line.lastIndexOf(' ', room);
    if (cut <= line.length() - line.stripLeading().length()) {
      cut = room;
    }
    return line.substring(0, cut).stripTrailing() + "...";
  }

  /**
   * {@code line} broken at spaces into lines of at most {@code width} characters, the continuation
   * lines indented; a word longer than a whole line gets a line of its own rather than being split.
   */
  static List<String> wrap(String line, int width) {
    List<String> out = new ArrayList<>();
    String rest = line;
    String indent = "";
    while (indent.length() + rest.length() > width) {
      int room = width - indent.length();
      int cut = rest.lastIndexOf(' ', room);
      int lead = rest.length() - rest.stripLeading().length();
      if (cut <= lead) {
        cut = rest.indexOf(' ', room); // one long word: it keeps its line, unbroken
        if (cut < 0) {
          break;
        }
      }
      out.add(indent + rest.substring(0, cut).stripTrailing());
      rest = rest.substring(cut).stripLeading();
      indent = CONTINUATION;
    }
    if (!rest.isEmpty() || out.isEmpty()) {
      out.add(indent + rest);
    }
    return out;
  }

  private static String metrics(Map<String, Double> m) {
    if (m.isEmpty()) {
      return "";
    }
    return "  "
        + new TreeMap<>(m)
            .entrySet().stream()
                .limit(6)
                .map(e -> e.getKey() + "=" + String.format(Locale.ROOT, "%.4g", e.getValue()))
                .collect(Collectors.joining(" "));
  }

  private static String shortId(String runId) {
    return runId.length() > 8 ? runId.substring(0, 8) : runId;
  }
}
