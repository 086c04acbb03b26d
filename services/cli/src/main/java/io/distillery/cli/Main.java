package io.distillery.cli;

import java.io.PrintWriter;
import picocli.CommandLine;
import picocli.CommandLine.Command;

/** The {@code distillery} command. */
@Command(
    name = "distillery",
    mixinStandardHelpOptions = true,
    version = "distillery 0.1.0",
    description = "Event-driven model compression on Kafka.",
    subcommands = {
      UpCommand.class,
      RegisterCommand.class,
      WatchCommand.class,
      StatusCommand.class,
      RunsCommand.class,
      StagesCommand.class,
      TeacherCommand.class,
      MisfiresCommand.class
    })
public final class Main implements Runnable {

  @CommandLine.Spec CommandLine.Model.CommandSpec spec;

  @Override
  public void run() {
    spec.commandLine().usage(spec.commandLine().getOut());
  }

  public static void main(String[] args) {
    System.exit(execute(args));
  }

  /** The seam for tests: runs one command line, returns its exit code. */
  public static int execute(String... args) {
    return execute(new PrintWriter(System.out, true), new PrintWriter(System.err, true), args);
  }

  /**
   * Runs one command line with its output and errors going to the given writers, flushed before it
   * returns: the caller may exit at once, and a {@code print} still in a writer's buffer would be
   * lost.
   */
  public static int execute(PrintWriter out, PrintWriter err, String... args) {
    try {
      return new CommandLine(new Main())
          .setOut(out)
          .setErr(err)
          .setExecutionExceptionHandler(
              (e, cmd, parsed) -> {
                cmd.getErr().println("error: " + e.getMessage());
                return 2;
              })
          .execute(args);
    } finally {
      out.flush();
      err.flush();
    }
  }
}
