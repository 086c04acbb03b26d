package io.distillery.cli;

import com.fasterxml.jackson.databind.ObjectMapper;
import io.distillery.model.tasks.TaskKind;
import io.distillery.model.train.TeacherConfig;
import io.distillery.model.train.TeacherReport;
import io.distillery.model.train.TeacherTrainer;
import io.distillery.runtime.kafka.KafkaSettings;
import io.distillery.runtime.recipe.Recipe;
import io.distillery.runtime.recipe.RecipeException;
import io.distillery.runtime.recipe.RecipeParser;
import io.distillery.runtime.service.ServicePlugin;
import io.distillery.runtime.worker.WorkerConfig;
import io.distillery.runtime.worker.WorkerHost;
import io.distillery.runtime.worker.WorkerMemory;
import io.distillery.stack.LocalStack;
import io.distillery.stage.StageDescriptor;
import io.distillery.stage.StageRegistry;
import io.vertx.core.Vertx;
import java.io.IOException;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.time.Duration;
import java.util.ArrayDeque;
import java.util.Arrays;
import java.util.Comparator;
import java.util.Deque;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.ServiceLoader;
import java.util.concurrent.Callable;
import java.util.concurrent.CountDownLatch;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/**
 * The whole platform in one process: an in-process Kafka broker, the schema registry, every {@link
 * ServicePlugin} and every stage worker on the class path. Ctrl-C stops everything in reverse
 * order. Writes {@code <dir>/stack.json} so other commands find the stack without flags.
 *
 * <p>The console shows the runs, not a log: the logs go to {@code <dir>/logs/distillery.log} (the
 * console has them too with {@code --verbose}), and once the stack is up every run registered from
 * then on is drawn live, one line per stage (redrawn in place on a terminal, plain lines otherwise
 * or with {@code --verbose}), with its result.
 */
@Command(
    name = "up",
    mixinStandardHelpOptions = true,
    description = "Start broker, registry, planner and all workers in one process (Ctrl-C stops).")
final class UpCommand implements Callable<Integer> {

  @picocli.CommandLine.Spec picocli.CommandLine.Model.CommandSpec spec;

  private PrintWriter out() {
    return spec.commandLine().getOut();
  }

  @Option(
      names = "--dir",
      defaultValue = "run",
      description = "Run directory (default: ${DEFAULT-VALUE})")
  Path dir;

  @Option(
      names = "--web-port",
      defaultValue = "8070",
      description = "Port of the live runs page (0 = any free port)")
  int webPort;

  @Option(
      names = "--demo",
      description =
          "Also register a tiny generated Llama checkpoint with --recipe and show its progress")
  boolean demo;

  @Option(
      names = "--recipe",
      defaultValue = "recipes/demo.yaml",
      description = "Recipe of the demo run (default: ${DEFAULT-VALUE})")
  Path recipe;

  @Option(
      names = "--teacher",
      description =
          "Teacher checkpoint of the demo run (default: train a small one into <dir>/demo-teacher)")
  Path teacher;

  @Option(
      names = "--verbose",
      description =
          "Show the logs on the console too (they always go to <dir>/logs/distillery.log)")
  boolean verbose;

  static final String LOG_FILE = "distillery.log";

  /** Released to stop (tests, Ctrl-C); main waits for it. */
  CountDownLatch stop = new CountDownLatch(1);

  @Override
  public Integer call() throws Exception {
    Files.createDirectories(dir);
    Path store = dir.resolve("store").toAbsolutePath();
    Path logPath = dir.resolve("logs").resolve(LOG_FILE).toAbsolutePath();
    LogFile logs = LogFile.redirect(logPath, verbose);
    long startedAt = System.currentTimeMillis();
    Deque<AutoCloseable> running = new ArrayDeque<>();
    Thread hook =
        new Thread(
            () -> {
              stop.countDown();
              closeAll(running);
            },
            "distillery-up-shutdown");
    Runtime.getRuntime().addShutdownHook(hook);
    try {
      out().println("logs: " + logPath + (verbose ? "" : " (--verbose shows them here too)"));
      out()
          .println("starting Kafka broker and schema registry in " + dir.toAbsolutePath() + " ...");
      LocalStack stack = LocalStack.start(dir.toAbsolutePath());
      running.push(stack);
      Map<String, String> info = new LinkedHashMap<>();
      info.put("bootstrap", stack.bootstrapServers());
      info.put("registry", stack.registryUrl());
      info.put("store", store.toString());
      new ObjectMapper()
          .writerWithDefaultPrettyPrinter()
          .writeValue(dir.resolve(ClusterOptions.STACK_FILE).toFile(), info);
      Vertx vertx = Vertx.vertx();
      running.push(vertx::close);
      ServicePlugin.Environment env =
          new ServicePlugin.Environment(
              stack.bootstrapServers(), stack.registryUrl(), dir.toAbsolutePath(), store, vertx);
      List<ServicePlugin> services =
          ServiceLoader.load(ServicePlugin.class).stream()
              .map(ServiceLoader.Provider::get)
              .sorted(Comparator.comparingInt(ServicePlugin::order))
              .toList();
      for (ServicePlugin s : services) {
        out().println("starting " + s.name() + " ...");
        running.push(s.start(env));
      }
      WorkerConfig wc =
          WorkerConfig.of(stack.bootstrapServers(), stack.registryUrl(), store)
              .withWorkerId("local")
              .withHttpPort(0)
              .withMemoryBudget(
                  WorkerMemory.resolve(System.getenv("DISTILLERY_WORKER_MEMORY")).bytes());
      for (StageDescriptor d : StageRegistry.discover().all().values()) {
        WorkerHost host = WorkerHost.start(d, wc, vertx);
        running.push(host);
        out().printf("worker %-14s http://127.0.0.1:%d/health%n", d.name(), host.httpPort());
      }
      RunsPage page =
          new RunsPage(
              vertx,
              KafkaSettings.of(stack.bootstrapServers(), stack.registryUrl()),
              webPort,
              store);
      running.push(page);
      out().println();
      out().println("Distillery is up.");
      out().println("  runs page: http://127.0.0.1:" + page.port() + "/");
      out().println("  bootstrap: " + stack.bootstrapServers());
      out().println("  registry:  " + stack.registryUrl());
      out().println("  store:     " + store);
      out().println("  register:  ./distillery register --model <dir> --recipe <file>");
      out().println("  watch:     ./distillery watch");
      out().println("Ctrl-C stops.");
      out().println();
      out().flush();
      boolean terminal = !verbose && System.console() != null;
      ProgressRenderer view =
          new ProgressRenderer(out(), terminal, ProgressRenderer.width(System.getenv()));
      try (RunsView runs =
          new RunsView(KafkaSettings.of(stack.bootstrapServers(), stack.registryUrl()))) {
        if (demo) {
          runDemo(stack, runs, view);
        }
        // every run registered from now on, live, until Ctrl-C
        WatchCommand.follow(
            runs,
            view,
            s -> s.getCreatedAt().toEpochMilli() >= startedAt,
            false,
            false,
            () -> stop.getCount() == 0);
      } catch (RuntimeException e) {
        if (stop.getCount() > 0) {
          throw e;
        } // stopping: the broker went away under the view
      }
      stop.await();
      return 0;
    } finally {
      closeAll(running);
      try {
        Runtime.getRuntime().removeShutdownHook(hook);
      } catch (IllegalStateException e) {
        // the JVM is already shutting down; the hook is running
      }
      logs.close();
    }
  }

  /**
   * The demo's teacher: {@code --teacher DIR} if given, else a small Llama trained here on the
   * copy, reverse and sort tasks (about two minutes on two cores, cached in {@code
   * <dir>/demo-teacher}).
   */
  private Path demoTeacher() throws IOException {
    if (teacher != null) {
      return teacher.toAbsolutePath();
    }
    Path model = dir.resolve("demo-teacher").toAbsolutePath();
    if (Files.exists(model.resolve("model.safetensors"))
        && Files.exists(model.resolve("test.jsonl"))) {
      out().println("demo teacher: " + model + " (cached)");
      return model;
    }
    TeacherConfig config = demoTeacherConfig();
    out()
        .println(
            "training the demo teacher ("
                + config.layers()
                + " layers, hidden "
                + config.hidden()
                + ", "
                + config.steps()
                + " steps) into "
                + model
                + " ...");
    Path partial = dir.resolve("demo-teacher.partial").toAbsolutePath();
    TeacherReport report =
        new TeacherTrainer(
                config,
                p -> {
                  out().print("\r" + p.bar());
                  out().flush();
                })
            .trainAndSave(partial);
    Files.move(partial, model, StandardCopyOption.ATOMIC_MOVE);
    out()
        .printf(
            Locale.ROOT,
            "%ndemo teacher: params=%d exact_match=%.3f perplexity=%.3f seconds=%.0f%n",
            report.parameters(),
            report.exactMatch(),
            report.perplexity(),
            report.totalSeconds());
    return model;
  }

  static TeacherConfig demoTeacherConfig() {
    return TeacherConfig.teacher()
        .layers(2)
        .hidden(128)
        .heads(4)
        .kvHeads(2)
        .intermediate(352)
        .steps(1000)
        .batch(32)
        .learningRate(3e-3)
        .warmupSteps(50)
        .threads(1)
        .tasks(List.of(TaskKind.COPY, TaskKind.REVERSE, TaskKind.SORT))
        .trainExamples(20_000)
        .validationExamples(100)
        .testExamples(300)
        .evalEvery(0)
        .build();
  }

  /** Registers the demo teacher with the demo recipe and draws the run until it ends. */
  private void runDemo(LocalStack stack, RunsView runs, ProgressRenderer view) throws Exception {
    Path model = demoTeacher();
    String[] common = {
      "--bootstrap",
      stack.bootstrapServers(),
      "--registry",
      stack.registryUrl(),
      "--store",
      dir.resolve("store").toAbsolutePath().toString()
    };
    StringWriter id = new StringWriter();
    String[] reg =
        concat(
            new String[] {
              "register",
              "--model",
              model.toString(),
              "--recipe",
              recipe.toString(),
              "--model-id",
              "demo-llama"
            },
            common);
    int code = Main.execute(new PrintWriter(id, true), new PrintWriter(System.err, true), reg);
    if (code != 0) {
      throw new IllegalStateException("demo registration failed");
    }
    String runId = id.toString().trim();
    out().println("demo run " + runId + " registered:");
    out().flush();
    int watched =
        WatchCommand.follow(
            runs, view, s -> runId.equals(s.getRunId()), true, false, () -> stop.getCount() == 0);
    if (watched == 0) {
      askTheServingNode(model);
    }
    if (watched != WatchCommand.NOT_FINISHED) {
      out().println("the stack stays up; runs registered from now on show here. Ctrl-C stops.");
      out().flush();
    }
  }

  /**
   * Sends one held-out prompt of the teacher's test split to the serving node the run deployed to,
   * and prints it.
   */
  private void askTheServingNode(Path teacherDir) throws Exception {
    Path file = dir.resolve("serving.json");
    if (!Files.exists(file)) {
      out().println("no serving node in this stack (" + file + " is missing)");
      return;
    }
    ObjectMapper json = new ObjectMapper();
    String url = json.readTree(file.toFile()).path("url").asText();
    Path test = teacherDir.resolve("test.jsonl");
    var example =
        Files.exists(test)
            ? json.readTree(Files.readAllLines(test).getFirst())
            : json.createObjectNode().put("prompt", "copy:demo=").put("answer", "demo");
    // name the deployment: a node that serves several (an earlier run's, restored from the
    // deployments topic) refuses a request without a model
    var fields = json.createObjectNode();
    String deployment = deploymentOf(recipe);
    if (deployment != null) {
      fields.put("model", deployment);
    }
    String body =
        fields
            .put("prompt", example.path("prompt").asText())
            .put("max_tokens", 16)
            .put("verify", example.path("answer").asText())
            .toString();
    var request =
        HttpRequest.newBuilder(URI.create(url + "/v1/completions"))
            .timeout(Duration.ofSeconds(30))
            .header("Content-Type", "application/json")
            .POST(HttpRequest.BodyPublishers.ofString(body))
            .build();
    try (var client = HttpClient.newHttpClient()) {
      var response = client.send(request, HttpResponse.BodyHandlers.ofString());
      var answer = json.readTree(response.body());
      out().println();
      out()
          .println(
              "serving node: "
                  + url
                  + " (POST /v1/completions, /v1/feedback; GET /health, /metrics)");
      out().println("  prompt   " + example.path("prompt").asText());
      if (response.statusCode() != 200) {
        out()
            .println(
                "  answer   HTTP "
                    + response.statusCode()
                    + ": "
                    + answer.path("error").path("message").asText(response.body()));
        return;
      }
      out()
          .println(
              "  answer   "
                  + answer.path("choices").path(0).path("text").asText()
                  + "   (expected "
                  + example.path("answer").asText()
                  + ", HTTP "
                  + response.statusCode()
                  + ", artefact "
                  + answer
                      .path("distillery")
                      .path("artefactSha256")
                      .asText()
                      .substring(
                          0,
                          Math.min(
                              12,
                              answer.path("distillery").path("artefactSha256").asText().length()))
                  + ")");
      out()
          .println(
              "  try it:  curl -s "
                  + url
                  + "/v1/completions -H 'Content-Type: application/json' -d '"
                  + body
                  + "'");
    }
  }

  /** The {@code deployment} param of the recipe's deployer node, or null (none, unreadable). */
  static String deploymentOf(Path recipeFile) {
    try {
      Recipe r = RecipeParser.parse(Files.readString(recipeFile), stage -> true);
      return r.nodes().values().stream()
          .filter(n -> n.stage().equals("deployer") && n.params().hasNonNull("deployment"))
          .map(n -> n.params().get("deployment").asText())
          .findFirst()
          .orElse(null);
    } catch (IOException | RecipeException e) {
      return null;
    }
  }

  private static String[] concat(String[] a, String[] b) {
    String[] out = Arrays.copyOf(a, a.length + b.length);
    System.arraycopy(b, 0, out, a.length, b.length);
    return out;
  }

  private synchronized void closeAll(Deque<AutoCloseable> running) {
    while (!running.isEmpty()) {
      AutoCloseable c = running.pop();
      try {
        if (c instanceof WorkerHost h) {
          h.close(Duration.ofSeconds(5));
        } else {
          c.close();
        }
      } catch (Exception e) {
        spec.commandLine().getErr().println("while stopping: " + e);
      }
    }
  }
}
