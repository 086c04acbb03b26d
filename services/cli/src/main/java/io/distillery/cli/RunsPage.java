package io.distillery.cli;

import io.distillery.runtime.artefact.ArtefactUriException;
import io.distillery.runtime.kafka.KafkaSettings;
import io.distillery.schemas.run.RunState;
import io.vertx.core.Vertx;
import io.vertx.core.http.HttpServer;
import io.vertx.core.http.HttpServerRequest;
import io.vertx.core.http.HttpServerResponse;
import java.io.FileNotFoundException;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The live web view that {@code distillery up} serves: {@code /} is a self-contained page (runs as
 * recipe graphs with live stage states, metrics with units, evaluation reports with their
 * size-vs-quality chart, deployments with their misfire rate), {@code /events} a server-sent-event
 * stream (run states as unnamed events, JSON as {@code status --json}; deployments as {@code
 * deployment} events), {@code /runs} and {@code /deployments} the current lists, and {@code
 * /reports/<sha256>/<file>} the files of the evaluator's {@code eval-report} artefacts, read from
 * the store (see {@link EvaluationReports}). Two reader threads follow the topics from the start
 * and fan each change out to every open stream.
 */
public final class RunsPage implements AutoCloseable {

  private static final Logger LOG = LoggerFactory.getLogger(RunsPage.class);
  private static final Pattern REPORT = Pattern.compile("/reports/([^/]+)/([^/]*)");

  private final HttpServer server;
  private final List<Thread> readers;
  private final EvaluationReports reports;
  private final Map<String, String> latest = new ConcurrentHashMap<>();
  private final Map<String, String> deployments = new ConcurrentHashMap<>();
  private final List<HttpServerResponse> streams = new CopyOnWriteArrayList<>();
  private volatile boolean running = true;

  /** A page without an artefact store: evaluation reports are listed but not served. */
  public RunsPage(Vertx vertx, KafkaSettings kafka, int port) throws Exception {
    this(vertx, kafka, port, null);
  }

  /**
   * @param store the artefact store root the workers write to ({@code file://}), from which reports
   *     are served; null for none
   */
  public RunsPage(Vertx vertx, KafkaSettings kafka, int port, Path store) throws Exception {
    this.reports = new EvaluationReports(store);
    Thread runs =
        new Thread(
            () -> {
              try (RunsView view = new RunsView(kafka)) {
                while (running) {
                  view.poll(Duration.ofMillis(200), this::publish);
                }
              }
            },
            "runs-page-reader");
    Thread deploys =
        new Thread(
            () -> {
              try (DeploymentsView view = new DeploymentsView(kafka)) {
                while (running) {
                  Set<String> changed = view.poll(Duration.ofMillis(200));
                  changed.forEach(id -> publishDeployment(id, view.board().json(id).toString()));
                }
              } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
              }
            },
            "runs-page-deployments");
    this.readers = List.of(runs, deploys);
    readers.forEach(
        t -> {
          t.setDaemon(true);
          t.start();
        });
    this.server = vertx.createHttpServer().requestHandler(this::handle);
    server
        .listen(port, "127.0.0.1")
        .toCompletionStage()
        .toCompletableFuture()
        .get(10, TimeUnit.SECONDS);
  }

  private void handle(HttpServerRequest req) {
    switch (req.path()) {
      case "/", "/index.html" ->
          req.response().putHeader("content-type", "text/html; charset=utf-8").end(page());
      case "/runs" ->
          req.response()
              .putHeader("content-type", "application/json")
              .end("[" + String.join(",", latest.values()) + "]");
      case "/deployments" ->
          req.response()
              .putHeader("content-type", "application/json")
              .end("[" + String.join(",", deployments.values()) + "]");
      case "/events" -> {
        HttpServerResponse r =
            req.response()
                .setChunked(true)
                .putHeader("content-type", "text/event-stream")
                .putHeader("cache-control", "no-cache");
        latest.values().forEach(json -> r.write("data: " + json + "\n\n"));
        deployments.values().forEach(json -> r.write("event: deployment\ndata: " + json + "\n\n"));
        streams.add(r);
        r.closeHandler(v -> streams.remove(r));
      }
      default -> {
        Matcher m = REPORT.matcher(req.path());
        if (m.matches()) {
          report(req, m.group(1), m.group(2));
        } else {
          req.response().setStatusCode(404).end("not found\n");
        }
      }
    }
  }

  private void report(HttpServerRequest req, String sha, String name) {
    if (name.isEmpty()) {
      req.response()
          .setStatusCode(302)
          .putHeader("location", "/reports/" + sha + "/report.html")
          .end();
      return;
    }
    try {
      Path file = reports.file(sha, name);
      req.response()
          .putHeader("content-type", EvaluationReports.contentType(file))
          .putHeader("cache-control", "no-cache")
          .sendFile(file.toString());
    } catch (ArtefactUriException e) {
      req.response().setStatusCode(403).end(e.getMessage() + "\n");
    } catch (FileNotFoundException e) {
      req.response().setStatusCode(404).end(e.getMessage() + "\n");
    } catch (IOException e) {
      LOG.warn("runs page cannot read report sha256={} file={} error={}", sha, name, e.toString());
      req.response().setStatusCode(500).end("cannot read the report: " + e.getMessage() + "\n");
    }
  }

  public int port() {
    return server.actualPort();
  }

  private void publish(RunState s) {
    reports.remember(s);
    String json = RunStateJson.text(s).replace("\n", "");
    latest.put(s.getRunId(), json);
    send("data: " + json + "\n\n");
  }

  private void publishDeployment(String id, String json) {
    deployments.put(id, json);
    send("event: deployment\ndata: " + json + "\n\n");
  }

  /**
   * Writes one event to every open stream; a stream closed meanwhile is dropped, never the reader
   * thread.
   */
  private void send(String frame) {
    for (HttpServerResponse r : streams) {
      try {
        r.write(frame);
      } catch (IllegalStateException e) {
        streams.remove(r);
      }
    }
  }

  private static String page() {
    try (var in = RunsPage.class.getResourceAsStream("/runs.html")) {
      return new String(in.readAllBytes(), StandardCharsets.UTF_8);
    } catch (IOException | NullPointerException e) {
      return "runs.html is missing from the CLI jar";
    }
  }

  @Override
  public void close() {
    running = false;
    streams.forEach(r -> r.end());
    server.close();
  }
}
