package io.distillery.cli;

import io.distillery.runtime.kafka.TopicAdmin;
import io.distillery.runtime.kafka.Topics;
import io.distillery.stage.StageDescriptor;
import io.distillery.stage.StageRegistry;
import java.io.PrintWriter;
import java.lang.reflect.RecordComponent;
import java.util.Arrays;
import java.util.Objects;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

/**
 * Stages served on the cluster (jobs topics), and stage plugins on this class path. With {@code
 * --markdown}, the reference of every plugin's params read from its params record (names, types,
 * defaults), so docs/stages.md cannot drift from the code.
 */
@Command(name = "stages", mixinStandardHelpOptions = true, description = "List stages.")
final class StagesCommand implements Callable<Integer> {

  @Spec CommandSpec spec;

  @Mixin ClusterOptions cluster;

  @Option(
      names = "--markdown",
      description = "Print the params of every stage plugin as Markdown and exit.")
  boolean markdown;

  private PrintWriter out() {
    return spec.commandLine().getOut();
  }

  @Override
  public Integer call() {
    if (markdown) {
      StageRegistry.discover().all().values().forEach(d -> printMarkdown(out(), d));
      out().flush();
      return 0;
    }
    out().println("stage plugins on this class path:");
    StageRegistry.discover()
        .all()
        .values()
        .forEach(
            d ->
                out()
                    .printf(
                        "  %-16s params=%s %s%n",
                        d.name(), d.params().getSimpleName(), d.description()));
    try (TopicAdmin admin = new TopicAdmin(cluster.kafka())) {
      out().println("stages served on the cluster:");
      admin.list().stream()
          .map(Topics::stageOf)
          .filter(Objects::nonNull)
          .sorted()
          .forEach(s -> out().println("  " + s));
    }
    out().flush();
    return 0;
  }

  static void printMarkdown(PrintWriter out, StageDescriptor d) {
    out.printf(
        "### `%s`%n%n%s (params record `%s`)%n%n", d.name(), d.description(), d.params().getName());
    RecordComponent[] components = d.params().getRecordComponents();
    if (components == null || components.length == 0) {
      out.printf("No params.%n%n");
      return;
    }
    Object defaults = defaults(d.params(), components);
    out.printf("| param | type | default |%n|---|---|---|%n");
    for (RecordComponent c : components) {
      out.printf(
          "| `%s` | %s | %s |%n",
          c.getName(),
          c.getGenericType().getTypeName().replace("java.lang.", "").replace("java.util.", ""),
          defaultOf(defaults, c));
    }
    out.println();
  }

  /**
   * The record built with every param absent, as a job with {@code params: {}} gets it; null if
   * that is invalid.
   */
  private static Object defaults(Class<?> type, RecordComponent[] components) {
    try {
      var ctor =
          type.getDeclaredConstructor(
              Arrays.stream(components).map(RecordComponent::getType).toArray(Class<?>[]::new));
      ctor.setAccessible(true);
      Object[] args = Arrays.stream(components).map(c -> absent(c.getType())).toArray();
      return ctor.newInstance(args);
    } catch (ReflectiveOperationException | RuntimeException e) {
      return null;
    }
  }

  private static Object absent(Class<?> type) {
    if (!type.isPrimitive()) {
      return null;
    }
    if (type == boolean.class) {
      return false;
    }
    if (type == char.class) {
      return '\0';
    }
    if (type == long.class) {
      return 0L;
    }
    if (type == double.class) {
      return 0.0;
    }
    if (type == float.class) {
      return 0.0f;
    }
    return type == byte.class ? (byte) 0 : type == short.class ? (short) 0 : 0;
  }

  private static String defaultOf(Object defaults, RecordComponent c) {
    if (defaults == null) {
      return "(some params are required)";
    }
    try {
      Object v = c.getAccessor().invoke(defaults);
      return v == null ? "—" : "`" + v + "`";
    } catch (ReflectiveOperationException e) {
      return "?";
    }
  }
}
