package io.distillery.cli;

import io.distillery.schemas.run.RunState;
import io.distillery.schemas.run.StageStatus;
import java.io.PrintWriter;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

/** All runs, one line each. */
@Command(name = "runs", mixinStandardHelpOptions = true, description = "List runs.")
final class RunsCommand implements Callable<Integer> {

  @picocli.CommandLine.Spec picocli.CommandLine.Model.CommandSpec spec;

  private PrintWriter out() {
    return spec.commandLine().getOut();
  }

  @Mixin ClusterOptions cluster;

  @Option(names = "--json", description = "Print JSON")
  boolean json;

  @Override
  public Integer call() {
    try (RunsView view = new RunsView(cluster.kafka())) {
      List<RunState> runs = List.copyOf(view.catchUp().values());
      if (json) {
        out().println(RunStateJson.text(runs));
        return 0;
      }
      out()
          .printf(
              Locale.ROOT,
              "%-36s %-20s %-24s %-9s %s%n",
              "RUN",
              "MODEL",
              "RECIPE",
              "STATUS",
              "STAGES");
      for (RunState r : runs) {
        long done =
            r.getStages().stream().filter(s -> s.getStatus() == StageStatus.COMPLETED).count();
        out()
            .printf(
                Locale.ROOT,
                "%-36s %-20s %-24s %-9s %d/%d%n",
                r.getRunId(),
                r.getModelId(),
                r.getRecipeName(),
                r.getStatus(),
                done,
                r.getStages().size());
      }
      return 0;
    }
  }
}
