package io.distillery.cli;

import io.distillery.runtime.kafka.KafkaSettings;
import io.distillery.schemas.run.RunState;
import io.vertx.core.Vertx;
import io.vertx.core.http.HttpServer;
import io.vertx.core.http.HttpServerResponse;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;

/**
 * The live web view of runs that {@code distillery up} serves: {@code /} is a self-contained page, {@code /events} a
 * server-sent-event stream of run states (JSON, as {@code status --json}), {@code /runs} the current list. One
 * consumer thread reads the compacted runs topic and fans each change out to every open stream.
 */
public final class RunsPage implements AutoCloseable {

  private final HttpServer server;
  private final Thread reader;
  private final Map<String, String> latest = new ConcurrentHashMap<>();
  private final List<HttpServerResponse> streams = new CopyOnWriteArrayList<>();
  private volatile boolean running = true;

  public RunsPage(Vertx vertx, KafkaSettings kafka, int port) throws Exception {
    this.reader = new Thread(() -> {
      try (RunsView view = new RunsView(kafka)) {
        while (running) {
          view.poll(Duration.ofMillis(200), this::publish);
        }
      }
    }, "runs-page-reader");
    reader.setDaemon(true);
    reader.start();
    this.server = vertx.createHttpServer().requestHandler(req -> {
      switch (req.path()) {
        case "/" -> req.response().putHeader("content-type", "text/html; charset=utf-8").end(page());
        case "/runs" -> req.response().putHeader("content-type", "application/json")
            .end("[" + String.join(",", latest.values()) + "]");
        case "/events" -> {
          HttpServerResponse r = req.response().setChunked(true)
              .putHeader("content-type", "text/event-stream").putHeader("cache-control", "no-cache");
          latest.values().forEach(json -> r.write("data: " + json + "\n\n"));
          streams.add(r);
          r.closeHandler(v -> streams.remove(r));
        }
        default -> req.response().setStatusCode(404).end("not found\n");
      }
    });
    server.listen(port, "127.0.0.1").toCompletionStage().toCompletableFuture().get(10, TimeUnit.SECONDS);
  }

  public int port() {
    return server.actualPort();
  }

  private void publish(RunState s) {
    String json = RunStateJson.text(s).replace("\n", "");
    latest.put(s.getRunId(), json);
    for (HttpServerResponse r : streams) {
      r.write("data: " + json + "\n\n");
    }
  }

  private static String page() {
    try (var in = RunsPage.class.getResourceAsStream("/runs.html")) {
      return new String(in.readAllBytes(), StandardCharsets.UTF_8);
    } catch (java.io.IOException | NullPointerException e) {
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
