package io.distillery.model.train;

import io.distillery.model.tasks.TaskKind;
import io.distillery.model.tasks.TaskSettings;
import java.io.PrintStream;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * Command line: trains the teacher and writes its checkpoint.
 *
 * <pre>
 * TeacherMain --out DIR [--steps N] [--batch N] [--lr X] [--warmup N] [--layers N] [--hidden N]
 *             [--heads N] [--kv-heads N] [--intermediate N] [--seed N] [--threads N] [--tasks add,copy,rev,kv,sort]
 *             [--digits N] [--text-length MIN:MAX] [--sort-length MIN:MAX] [--recall-pairs N]
 *             [--train N] [--validation N] [--test N] [--eval-every N] [--weight-decay X] [--clip X]
 * </pre>
 *
 * Prints a progress line (rewritten with {@code \r}) and ends with {@code teacher params=N
 * exact_match=X perplexity=X seconds=N}.
 */
public final class TeacherMain {

  private final PrintStream out;

  TeacherMain(PrintStream out) {
    this.out = out;
  }

  /**
   * Trains a teacher as the command line asks; the caller (the {@code distillery teacher} command)
   * owns the process and its exit code.
   *
   * @return 0 when the teacher was trained and written, 2 when the arguments are invalid (the
   *     reason on {@code err})
   */
  public static int execute(String[] args, PrintStream out, PrintStream err) throws Exception {
    try {
      new TeacherMain(out).run(args);
      return 0;
    } catch (IllegalArgumentException e) {
      err.println("teacher: " + e.getMessage());
      return 2;
    }
  }

  void run(String[] args) throws Exception {
    TeacherConfig.Builder builder = TeacherConfig.teacher();
    TaskSettings settings =
        builder.build().taskSettings(); // the real teacher's, changed by the flags below
    Path output = null;
    for (int i = 0; i < args.length; i++) {
      String name = args[i];
      if (i + 1 >= args.length) {
        throw new IllegalArgumentException("missing value for " + name);
      }
      String value = args[++i];
      switch (name) {
        case "--out" -> output = Path.of(value);
        case "--steps" -> builder.steps(Integer.parseInt(value));
        case "--batch" -> builder.batch(Integer.parseInt(value));
        case "--lr" -> builder.learningRate(Double.parseDouble(value));
        case "--warmup" -> builder.warmupSteps(Integer.parseInt(value));
        case "--layers" -> builder.layers(Integer.parseInt(value));
        case "--hidden" -> builder.hidden(Integer.parseInt(value));
        case "--heads" -> builder.heads(Integer.parseInt(value));
        case "--kv-heads" -> builder.kvHeads(Integer.parseInt(value));
        case "--intermediate" -> builder.intermediate(Integer.parseInt(value));
        case "--threads" -> builder.threads(Integer.parseInt(value));
        case "--eval-every" -> builder.evalEvery(Integer.parseInt(value));
        case "--seed" -> builder.seed(Long.parseLong(value));
        case "--weight-decay" -> builder.weightDecay(Double.parseDouble(value));
        case "--clip" -> builder.maxGradNorm(Double.parseDouble(value));
        case "--train" -> builder.trainExamples(Integer.parseInt(value));
        case "--test" -> builder.testExamples(Integer.parseInt(value));
        case "--validation" -> builder.validationExamples(Integer.parseInt(value));
        case "--tasks" -> {
          List<TaskKind> kinds = new ArrayList<>();
          for (String task : value.split(",")) {
            kinds.add(TaskKind.of(task.trim()));
          }
          builder.tasks(kinds);
        }
        case "--train-mix" -> {
          // kind:weight,... e.g. add:2,kv:3,copy:1 : the train split's share of each kind
          List<TaskKind> mix = new ArrayList<>();
          for (String part : value.split(",")) {
            String[] kv = part.trim().split(":");
            int weight = kv.length > 1 ? Integer.parseInt(kv[1]) : 1;
            if (weight < 1 || weight > 16) {
              throw new IllegalArgumentException(
                  "--train-mix weight must be in [1, 16], got " + part);
            }
            for (int w = 0; w < weight; w++) {
              mix.add(TaskKind.of(kv[0]));
            }
          }
          builder.trainMix(mix);
        }
        case "--digits" -> settings = settings.withAdditionDigits(Integer.parseInt(value));
        case "--text-length" -> {
          int[] range = range(name, value);
          settings = settings.withTextLength(range[0], range[1]);
        }
        case "--sort-length" -> {
          int[] range = range(name, value);
          settings = settings.withSortLength(range[0], range[1]);
        }
        case "--recall-pairs" -> settings = settings.withRecallPairs(Integer.parseInt(value));
        default -> throw new IllegalArgumentException("unknown option " + name);
      }
    }
    if (output == null) {
      throw new IllegalArgumentException("--out DIR is required");
    }
    TeacherConfig config = builder.taskSettings(settings).build();
    out.println("teacher config " + config);
    TeacherReport report = new TeacherTrainer(config, this::progress).trainAndSave(output);
    out.println();
    StringBuilder byTask = new StringBuilder();
    for (Map.Entry<String, Double> entry : report.exactMatchByTask().entrySet()) {
      byTask.append(' ').append(entry.getKey()).append('=').append(format(entry.getValue()));
    }
    out.println(
        "exact_match by task:"
            + byTask
            + " final_loss="
            + format(report.finalLoss())
            + " train_tok_s="
            + Math.round(report.trainTokensPerSecond())
            + " train_seconds="
            + Math.round(report.trainSeconds()));
    out.println(
        "teacher params="
            + report.parameters()
            + " exact_match="
            + format(report.exactMatch())
            + " perplexity="
            + format(report.perplexity())
            + " seconds="
            + Math.round(report.totalSeconds()));
  }

  private void progress(TrainingProgress p) {
    out.print((System.getenv("TEACHER_LOG_LINES") != null ? "\n" : "") + "\r" + p.bar());
    if (!p.validationExactMatch().isEmpty()) {
      StringBuilder scores = new StringBuilder();
      p.validationExactMatch().entrySet().stream()
          .sorted(Map.Entry.comparingByKey())
          .forEach(
              e -> scores.append(' ').append(e.getKey()).append('=').append(format(e.getValue())));
      out.print(" validation exact_match:" + scores + "\n");
    }
    out.flush();
  }

  private static int[] range(String name, String value) {
    String[] parts = value.split(":");
    if (parts.length != 2) {
      throw new IllegalArgumentException(name + " takes MIN:MAX, got " + value);
    }
    return new int[] {Integer.parseInt(parts[0]), Integer.parseInt(parts[1])};
  }

  private static String format(double value) {
    return String.format(Locale.ROOT, "%.4f", value);
  }
}
