package io.distillery.it;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.distillery.schemas.run.RunStatus;
import java.net.URI;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * A four-stage recipe with a fan-out and a fan-in, run by stage plugins that exist only in this
 * test module, through the real broker, registry, planner and worker hosts, driven by the CLI.
 */
class PipelineIT {

  static final String DIAMOND =
      """
      name: diamond
      stages:
        read:  { stage: hash }
        upper: { stage: transform, after: [read], params: { mode: upper } }
        rev:   { stage: transform, after: [read], params: { mode: reverse } }
        join:  { stage: merge, after: [upper, rev] }
      """;

  static Cluster.Services services;

  @BeforeAll
  static void start() throws Exception {
    services = Cluster.services(true, "pipeline", "hash", "transform", "merge");
  }

  @AfterAll
  static void stop() {
    services.close();
  }

  @Test
  void shouldRunFanOutAndFanInWhenStagesArePlugins() throws Exception {
    Path model = Cluster.model("hello distillery");
    Path recipe = Cluster.recipe(DIAMOND);

    var reg =
        Cluster.cli(
            "register",
            "--model",
            model.toString(),
            "--recipe",
            recipe.toString(),
            "--gate",
            "retention=0.9");
    assertThat(reg.code()).as(reg.err()).isZero();
    String runId = reg.out().trim();

    var watch = Cluster.cli("watch", runId, "--plain", "--timeout", "120");
    assertThat(watch.code()).as(watch.out() + watch.err()).isZero();
    assertThat(watch.out()).contains("read", "upper", "rev", "join", "100%", "SUCCEEDED");
    assertThat(watch.out()).containsPattern("read\\s+hash\\s+(RUNNING|COMPLETED)");

    var status = Cluster.cli("status", runId, "--json");
    assertThat(status.code()).as(status.err()).isZero();
    JsonNode run = new ObjectMapper().readTree(status.out());
    assertThat(run.path("status").asText()).isEqualTo("SUCCEEDED");
    assertThat(run.path("stages")).hasSize(4);
    for (JsonNode s : run.path("stages")) {
      assertThat(s.path("status").asText()).as(s.toString()).isEqualTo("COMPLETED");
      assertThat(s.path("completions").asInt()).isEqualTo(1);
      assertThat(s.path("artefacts")).isNotEmpty();
      assertThat(s.path("artefacts").get(0).path("sha256").asText()).hasSize(64);
      assertThat(s.path("metrics")).isNotEmpty();
      assertThat(s.path("cached").asBoolean()).isFalse();
    }
    JsonNode join = run.path("stages").get(3);
    assertThat(join.path("node").asText()).isEqualTo("join");
    assertThat(join.path("metrics").path("inputs").asDouble()).isEqualTo(2.0);
    Path merged = Path.of(URI.create(join.path("artefacts").get(0).path("uri").asText()));
    assertThat(Files.readString(merged))
        .isEqualTo("upper=HELLO DISTILLERY\nrev=yrellitsid olleh\n");

    // the worker hosts serve health and Prometheus metrics
    var http = java.net.http.HttpClient.newHttpClient();
    int port =
        services.workers().stream()
            .filter(w -> w.stage().equals("merge"))
            .findFirst()
            .orElseThrow()
            .httpPort();
    var health =
        http.send(
            java.net.http.HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + port + "/health"))
                .build(),
            java.net.http.HttpResponse.BodyHandlers.ofString());
    assertThat(health.statusCode()).isEqualTo(200);
    assertThat(health.body()).contains("\"status\":\"UP\"", "\"stage\":\"merge\"");
    var metrics =
        http.send(
            java.net.http.HttpRequest.newBuilder(
                    URI.create("http://127.0.0.1:" + port + "/metrics"))
                .build(),
            java.net.http.HttpResponse.BodyHandlers.ofString());
    // the live runs page of `distillery up` lists the run and streams it
    io.vertx.core.Vertx vertx = io.vertx.core.Vertx.vertx();
    try (var page = new io.distillery.cli.RunsPage(vertx, Cluster.kafka(), 0)) {
      var runs =
          java.net.http.HttpRequest.newBuilder(
                  URI.create("http://127.0.0.1:" + page.port() + "/runs"))
              .build();
      long deadline = System.nanoTime() + Duration.ofSeconds(30).toNanos();
      String body = "";
      while (!body.contains(runId) && System.nanoTime() < deadline) {
        body = http.send(runs, java.net.http.HttpResponse.BodyHandlers.ofString()).body();
        java.util.concurrent.locks.LockSupport.parkNanos(50_000_000L);
      }
      assertThat(body).contains(runId).contains("SUCCEEDED");
      var html =
          http.send(
              java.net.http.HttpRequest.newBuilder(
                      URI.create("http://127.0.0.1:" + page.port() + "/"))
                  .build(),
              java.net.http.HttpResponse.BodyHandlers.ofString());
      assertThat(html.body())
          .contains("<title>Distillery runs</title>", "new EventSource('/events')");
    } finally {
      vertx.close();
    }
    assertThat(metrics.body())
        .containsPattern("distillery_jobs_total\\{outcome=\"completed\",stage=\"merge\"} [1-9]");
  }

  @Test
  void shouldReuseCachedOutputsWhenTheSameJobRunsAgain() throws Exception {
    Path recipe = Cluster.recipe(DIAMOND);
    String first =
        Cluster.cli(
                "register",
                "--model",
                Cluster.model("cache me").toString(),
                "--recipe",
                recipe.toString())
            .out()
            .trim();
    Cluster.awaitRun(first, r -> r.getStatus() != RunStatus.RUNNING, Duration.ofSeconds(120));

    String second =
        Cluster.cli(
                "register",
                "--model",
                Cluster.model("cache me").toString(),
                "--recipe",
                recipe.toString())
            .out()
            .trim();
    var done =
        Cluster.awaitRun(second, r -> r.getStatus() != RunStatus.RUNNING, Duration.ofSeconds(120));
    assertThat(done.getStatus()).isEqualTo(RunStatus.SUCCEEDED);
    assertThat(done.getStages())
        .allSatisfy(s -> assertThat(s.getCached()).as(s.getNode()).isTrue());
    assertThat(done.getVerdict()).contains("4 from cache");
  }
}
