package io.distillery.serving;

import static org.assertj.core.api.Assertions.assertThat;

import io.distillery.schemas.misfire.Misfire;
import io.distillery.schemas.misfire.MisfireReason;
import io.distillery.schemas.serving.ServingTraffic;
import io.distillery.stage.ContentHash;
import io.vertx.core.json.JsonObject;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The request path on a real Vert.x server with a tiny model, without Kafka. */
class ServingNodeTest {

  @TempDir static Path tmp;

  static Path modelDir;
  static ServingNode node;
  static CapturedEvents events = new CapturedEvents();
  static String url;

  @BeforeAll
  static void start() throws Exception {
    modelDir = TinyCheckpoints.write(Files.createDirectories(tmp.resolve("model")), 32, 2, 5);
    ServingConfig config =
        ServingConfig.of(null, null, null)
            .withNodeId("test-node")
            .withLimits(64, 32)
            .withConfidenceThreshold(Double.NEGATIVE_INFINITY);
    node = ServingNode.start(config, events);
    node.serveLocal("tiny", modelDir, null);
    url = node.url();
  }

  @AfterAll
  static void stop() {
    node.close();
  }

  @Test
  void shouldAnswerWithOpenAiFieldsAndTheModelCoresGreedyAnswerWhenTheRequestIsValid()
      throws Exception {
    Http.Reply r =
        Http.complete(
            url,
            new JsonObject().put("model", "tiny").put("prompt", "12+34=").put("max_tokens", 6));

    assertThat(r.status()).as(r.text()).isEqualTo(200);
    JsonObject body = r.json();
    assertThat(body.getString("id")).startsWith("cmpl-");
    assertThat(body.getString("object")).isEqualTo("text_completion");
    assertThat(body.getString("model")).isEqualTo("tiny");
    JsonObject choice = body.getJsonArray("choices").getJsonObject(0);
    assertThat(choice.getString("text"))
        .isEqualTo(TinyCheckpoints.greedyAnswer(modelDir, "12+34=", 6));
    assertThat(choice.getString("finish_reason")).isIn("stop", "length");
    assertThat(body.getJsonObject("usage").getInteger("prompt_tokens"))
        .isEqualTo(7); // <s> + 6 bytes
    assertThat(body.getJsonObject("usage").getInteger("total_tokens"))
        .isEqualTo(7 + body.getJsonObject("usage").getInteger("completion_tokens"));
    JsonObject d = body.getJsonObject("distillery");
    assertThat(d.getString("artefactSha256")).isEqualTo(ContentHash.of(modelDir));
    assertThat(d.getDouble("confidence")).isNegative();
    assertThat(d.getBoolean("escalated")).isFalse();
  }

  @Test
  void shouldUseTheOnlyDeploymentWhenTheRequestNamesNoModel() throws Exception {
    Http.Reply r = Http.complete(url, new JsonObject().put("prompt", "hello").put("max_tokens", 2));
    assertThat(r.status()).as(r.text()).isEqualTo(200);
    assertThat(r.json().getString("model")).isEqualTo("tiny");
  }

  @Test
  void shouldRefuseMalformedJsonWith400AndKeepServing() throws Exception {
    Http.Reply broken = Http.post(url, "/v1/completions", "{\"prompt\": \"abc\", ");
    assertThat(broken.status()).isEqualTo(400);
    assertThat(broken.errorMessage()).contains("not valid JSON");

    Http.Reply array = Http.post(url, "/v1/completions", "[1, 2]");
    assertThat(array.status()).isEqualTo(400);
    assertThat(array.errorMessage()).contains("JSON object");

    Http.Reply empty = Http.post(url, "/v1/completions", "");
    assertThat(empty.status()).isEqualTo(400);

    Http.Reply wrongType = Http.post(url, "/v1/completions", "{\"prompt\": [\"a\"]}");
    assertThat(wrongType.status()).isEqualTo(400);
    assertThat(wrongType.errorMessage()).contains("prompt must be a string");

    assertThat(
            Http.complete(url, new JsonObject().put("prompt", "ok").put("max_tokens", 1)).status())
        .isEqualTo(200);
    assertThat(Http.get(url, "/health").status()).isEqualTo(200);
  }

  @Test
  void shouldRefuseAnOversizedPromptWith400NamingTheLimit() throws Exception {
    Http.Reply r = Http.complete(url, new JsonObject().put("prompt", "x".repeat(65)));
    assertThat(r.status()).isEqualTo(400);
    assertThat(r.errorMessage()).contains("65 characters").contains("at most 64");
    assertThat(r.json().getJsonObject("error").getString("param")).isEqualTo("prompt");

    Http.Reply huge =
        Http.post(url, "/v1/completions", "{\"prompt\": \"" + "y".repeat(200_000) + "\"}");
    assertThat(huge.status()).isEqualTo(413);
    assertThat(Http.get(url, "/health").status()).isEqualTo(200);
  }

  @Test
  void shouldRefuseMaxTokensOutOfRangeWith400() throws Exception {
    for (Object bad : new Object[] {0, -3, 33, 1_000_000_000, 1.5, "ten"}) {
      Http.Reply r =
          Http.complete(url, new JsonObject().put("prompt", "abc").put("max_tokens", bad));
      assertThat(r.status()).as("max_tokens=" + bad).isEqualTo(400);
      assertThat(r.json().getJsonObject("error").getString("param")).isEqualTo("max_tokens");
    }
    Http.Reply ok = Http.complete(url, new JsonObject().put("prompt", "abc").put("max_tokens", 32));
    assertThat(ok.status()).isEqualTo(200);
  }

  @Test
  void shouldRefuseBadSamplingParametersWith400() throws Exception {
    assertThat(
            Http.complete(url, new JsonObject().put("prompt", "a").put("temperature", -1)).status())
        .isEqualTo(400);
    assertThat(Http.complete(url, new JsonObject().put("prompt", "a").put("top_p", 0)).status())
        .isEqualTo(400);
    assertThat(Http.complete(url, new JsonObject().put("prompt", "a").put("n", 3)).status())
        .isEqualTo(400);
  }

  @Test
  void shouldAnswer404ForAModelTheNodeDoesNotServe() throws Exception {
    Http.Reply r = Http.complete(url, new JsonObject().put("model", "nope").put("prompt", "abc"));
    assertThat(r.status()).isEqualTo(404);
    assertThat(r.errorMessage()).contains("'nope'").contains("[tiny]");
    assertThat(Http.get(url, "/v2/whatever").status()).isEqualTo(404);
  }

  @Test
  void shouldReportDeploymentsAndShasOnHealthAndCountsOnMetrics() throws Exception {
    Http.Reply health = Http.get(url, "/health");
    assertThat(health.status()).isEqualTo(200);
    JsonObject dep = health.json().getJsonArray("deployments").getJsonObject(0);
    assertThat(dep.getString("id")).isEqualTo("tiny");
    assertThat(dep.getJsonObject("stable").getString("sha256")).isEqualTo(ContentHash.of(modelDir));

    Http.complete(url, new JsonObject().put("prompt", "m").put("max_tokens", 1));
    Http.Reply metrics = Http.get(url, "/metrics");
    assertThat(metrics.status()).isEqualTo(200);
    assertThat(metrics.text())
        .contains("distillery_serving_requests_total")
        .contains("distillery_misfires_dropped_total");
  }

  @Test
  void shouldRecordAUserFlagMisfireWhenFeedbackNamesAnEarlierCompletion() throws Exception {
    Http.Reply c = Http.complete(url, new JsonObject().put("prompt", "2+2=").put("max_tokens", 3));
    String id = c.json().getString("id");
    String text = c.json().getJsonArray("choices").getJsonObject(0).getString("text");

    Http.Reply f =
        Http.post(url, "/v1/feedback", new JsonObject().put("id", id).put("correct", "4").encode());

    assertThat(f.status()).as(f.text()).isEqualTo(202);
    Misfire m =
        events.of(Misfire.class).stream()
            .filter(x -> x.getRequestId().equals(id))
            .findFirst()
            .orElseThrow();
    assertThat(m.getReason()).isEqualTo(MisfireReason.USER_FLAG);
    assertThat(m.getPrompt()).isEqualTo("2+2=");
    assertThat(m.getOutput()).isEqualTo(text);
    assertThat(m.getExpected()).isEqualTo("4");
    assertThat(m.getDeploymentId()).isEqualTo("tiny");
    assertThat(m.getArtefactSha256()).isEqualTo(ContentHash.of(modelDir));

    assertThat(Http.post(url, "/v1/feedback", "{\"id\": \"cmpl-unknown\"}").status())
        .isEqualTo(404);
    assertThat(Http.post(url, "/v1/feedback", "{\"prompt\": \"p\", \"output\": \"o\"}").status())
        .isEqualTo(202);
    assertThat(Http.post(url, "/v1/feedback", "{\"correct\": 4}").status()).isEqualTo(400);
  }

  @Test
  void shouldRecordAWrongAnswerMisfireWhenTheAnswerDiffersFromVerify() throws Exception {
    Http.Reply r =
        Http.complete(
            url,
            new JsonObject()
                .put("prompt", "7+1=")
                .put("max_tokens", 3)
                .put("verify", "definitely not this"));
    assertThat(r.status()).isEqualTo(200);
    String id = r.json().getString("id");
    Misfire m =
        events.of(Misfire.class).stream()
            .filter(x -> x.getRequestId().equals(id))
            .findFirst()
            .orElseThrow();
    assertThat(m.getReason()).isEqualTo(MisfireReason.WRONG_ANSWER);
    assertThat(m.getExpected()).isEqualTo("definitely not this");
    assertThat(m.getOutput())
        .isEqualTo(r.json().getJsonArray("choices").getJsonObject(0).getString("text"));

    String answer = TinyCheckpoints.greedyAnswer(modelDir, "7+1=", 3);
    Http.Reply right =
        Http.complete(
            url, new JsonObject().put("prompt", "7+1=").put("max_tokens", 3).put("verify", answer));
    String rightId = right.json().getString("id");
    assertThat(events.of(Misfire.class)).noneMatch(x -> x.getRequestId().equals(rightId));
  }

  @Test
  void shouldAnswer503WhenTheGenerationQueueIsFullAndServeTheRest() throws Exception {
    ServingConfig config =
        ServingConfig.of(null, null, null)
            .withNodeId("small")
            .withLimits(64, 256)
            .withCapacity(1, 1, 16)
            .withConfidenceThreshold(Double.NEGATIVE_INFINITY);
    try (ServingNode small = ServingNode.start(config, new CapturedEvents())) {
      small.serveLocal("tiny", modelDir, null);
      java.util.concurrent.ExecutorService clients =
          java.util.concurrent.Executors.newFixedThreadPool(10);
      java.util.List<java.util.concurrent.Future<Http.Reply>> replies = new java.util.ArrayList<>();
      for (int i = 0; i < 10; i++) {
        replies.add(
            clients.submit(
                () ->
                    Http.complete(
                        small.url(),
                        new JsonObject().put("prompt", "long answer").put("max_tokens", 256))));
      }
      java.util.List<Integer> statuses = new java.util.ArrayList<>();
      for (var f : replies) {
        Http.Reply r = f.get();
        statuses.add(r.status());
        if (r.status() == 503) {
          assertThat(r.errorMessage()).contains("capacity");
        }
      }
      clients.shutdown();
      assertThat(statuses).contains(503).contains(200).containsOnly(200, 503);
      assertThat(Http.get(small.url(), "/metrics").text())
          .containsPattern("distillery_serving_rejected_total [1-9]");
      assertThat(
              Http.complete(
                      small.url(), new JsonObject().put("prompt", "after").put("max_tokens", 1))
                  .status())
          .isEqualTo(200);
    }
  }

  @Test
  void shouldAnswer503OnHealthBeforeAModelIsLoadedAnd504CountedOnceAsAnErrorWhenGenerationTimesOut()
      throws Exception {
    CapturedEvents own = new CapturedEvents();
    ServingConfig config =
        ServingConfig.of(null, null, null)
            .withNodeId("slow")
            .withTiming(Duration.ofNanos(1), 60_000);
    try (ServingNode empty = ServingNode.start(config, own)) {
      Http.Reply health = Http.get(empty.url(), "/health");
      assertThat(health.status()).isEqualTo(503);
      assertThat(health.json().getString("status")).isEqualTo("LOADING");
      assertThat(Http.complete(empty.url(), new JsonObject().put("prompt", "a")).status())
          .isEqualTo(503);

      empty.serveLocal("tiny", modelDir, null);
      assertThat(Http.get(empty.url(), "/health").status()).isEqualTo(200);
      Http.Reply late =
          Http.complete(empty.url(), new JsonObject().put("prompt", "abc").put("max_tokens", 4));
      assertThat(late.status()).isEqualTo(504);
      assertThat(late.json().getJsonObject("error").getString("type")).isEqualTo("server_error");
      // a timeout is the node's failure, not a wrong answer: one error, no misfire (a canary is not
      // penalised twice)
      assertThat(own.of(Misfire.class)).isEmpty();
      empty.publishTraffic();
      assertThat(own.of(ServingTraffic.class))
          .singleElement()
          .satisfies(
              t -> {
                assertThat(t.getRequests()).isEqualTo(1);
                assertThat(t.getErrors()).isEqualTo(1);
                assertThat(t.getMisfires()).isZero();
              });
    }
  }
}
