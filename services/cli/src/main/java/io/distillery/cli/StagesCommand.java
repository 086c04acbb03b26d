package io.distillery.cli;

import io.distillery.runtime.kafka.TopicAdmin;
import io.distillery.runtime.kafka.Topics;
import io.distillery.stage.StageRegistry;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;

/** Stages served on the cluster (jobs topics), and stage plugins on this class path. */
@Command(name = "stages", mixinStandardHelpOptions = true, description = "List stages.")
final class StagesCommand implements Callable<Integer> {

  @picocli.CommandLine.Spec picocli.CommandLine.Model.CommandSpec spec;

  private java.io.PrintWriter out() {
    return spec.commandLine().getOut();
  }

  @Mixin ClusterOptions cluster;

  @Override
  public Integer call() {
    out().println("stage plugins on this class path:");
    StageRegistry.discover().all().values().forEach(d -> out().printf("  %-16s params=%s %s%n", d.name(),
        d.params().getSimpleName(), d.description()));
    try (TopicAdmin admin = new TopicAdmin(cluster.kafka())) {
      out().println("stages served on the cluster:");
      admin.list().stream().map(Topics::stageOf).filter(java.util.Objects::nonNull).sorted()
          .forEach(s -> out().println("  " + s));
    }
    return 0;
  }
}
