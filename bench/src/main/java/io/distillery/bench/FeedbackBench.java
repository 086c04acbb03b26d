package io.distillery.bench;

import io.distillery.stack.LocalStack;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Locale;

/**
 * {@code bench/feedback [PROMPTS] [REDISTILL_STEPS]}: the closed loop of {@link FeedbackLoop} on
 * its own in-process broker and registry. Last line: {@code feedback misfire_rate_before=X
 * misfire_rate_after=X seconds_to_redeploy=N}.
 */
public final class FeedbackBench {

  private FeedbackBench() {}

  public static void main(String[] args) throws Exception {
    var defaults = FeedbackLoop.Options.defaults();
    var options =
        new FeedbackLoop.Options(
            args.length > 0 ? Integer.parseInt(args[0]) : defaults.prompts(),
            defaults.teacherSteps(),
            args.length > 1 ? Integer.parseInt(args[1]) : defaults.redistillSteps(),
            Duration.ofMinutes(10));
    Path dir = Files.createTempDirectory("distillery-feedback-bench");
    long began = System.nanoTime();
    try (LocalStack stack = LocalStack.start(dir.resolve("stack"))) {
      FeedbackLoop.Result r =
          new FeedbackLoop(
                  stack.bootstrapServers(),
                  stack.registryUrl(),
                  dir.resolve("store"),
                  dir.resolve("work"),
                  options,
                  System.out)
              .run();
      System.out.printf(
          Locale.ROOT,
          "prompts=%d teacher_exact_match=%.3f weak_run=%s redistill_run=%s%n",
          r.prompts(),
          r.teacherExactMatch(),
          r.weakRunId(),
          r.redistillRunId());
      System.out.println("re-distillation verdict: " + r.redistillRun().getVerdict());
      System.out.printf(
          Locale.ROOT,
          "artefact before %s, after %s; wall %.0f s%n",
          r.shaBefore(),
          r.shaAfter(),
          (System.nanoTime() - began) / 1e9);
      System.out.println(r.line());
    }
  }
}
