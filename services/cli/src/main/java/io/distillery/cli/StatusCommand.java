package io.distillery.cli;

import io.distillery.schemas.run.RunState;
import java.io.PrintWriter;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

/** The latest state of one run: stages, artefacts, metrics, verdict. */
@Command(
    name = "status",
    mixinStandardHelpOptions = true,
    description = "Show one run (--json for machines).")
final class StatusCommand implements Callable<Integer> {

  @picocli.CommandLine.Spec picocli.CommandLine.Model.CommandSpec spec;

  private PrintWriter out() {
    return spec.commandLine().getOut();
  }

  @Mixin ClusterOptions cluster;

  @Parameters(index = "0", description = "Run id")
  String runId;

  @Option(names = "--json", description = "Print JSON")
  boolean json;

  @Override
  public Integer call() {
    try (RunsView view = new RunsView(cluster.kafka())) {
      RunState r = view.catchUp().get(runId);
      if (r == null) {
        spec.commandLine()
            .getErr()
            .println("no run " + runId + " (the planner has not seen it yet, or the id is wrong)");
        return 1;
      }
      out()
          .print(
              json
                  ? RunStateJson.text(r) + System.lineSeparator()
                  : ProgressRenderer.block(r, ProgressRenderer.width(System.getenv())));
      return 0;
    }
  }
}
