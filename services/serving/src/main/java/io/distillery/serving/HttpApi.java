package io.distillery.serving;

import io.distillery.schemas.misfire.MisfireReason;
import io.distillery.serving.CompletionService.Served;
import io.distillery.serving.model.ServedModel;
import io.distillery.serving.rollout.Deployment;
import io.distillery.serving.rollout.Deployments;
import io.micrometer.prometheusmetrics.PrometheusMeterRegistry;
import io.vertx.core.Context;
import io.vertx.core.Vertx;
import io.vertx.core.http.HttpServer;
import io.vertx.core.json.DecodeException;
import io.vertx.core.json.Json;
import io.vertx.core.json.JsonArray;
import io.vertx.core.json.JsonObject;
import io.vertx.ext.web.Router;
import io.vertx.ext.web.RoutingContext;
import io.vertx.ext.web.handler.BodyHandler;
import java.util.List;
import java.util.UUID;
import java.util.concurrent.TimeUnit;
import java.util.function.BooleanSupplier;
import java.util.function.Supplier;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The node's OpenAI-style HTTP API on Vert.x: routing, body limits, parsing and validation (every
 * refusal names the field), and the JSON of answers and errors. {@code POST /v1/completions} hands
 * the request to the {@link CompletionService} and answers on the event loop when it is done;
 * {@code POST /v1/feedback} flags an answer; {@code GET /health} and {@code GET /metrics} describe
 * the node.
 */
final class HttpApi {

  private static final Logger LOG = LoggerFactory.getLogger(HttpApi.class);

  private final Vertx vertx;
  private final ServingConfig config;
  private final CompletionService completions;
  private final Deployments deployments;
  private final PrometheusMeterRegistry metrics;
  private final BooleanSupplier closed;
  private final Supplier<String> url;

  HttpApi(
      Vertx vertx,
      ServingConfig config,
      CompletionService completions,
      Deployments deployments,
      PrometheusMeterRegistry metrics,
      BooleanSupplier closed,
      Supplier<String> url) {
    this.vertx = vertx;
    this.config = config;
    this.completions = completions;
    this.deployments = deployments;
    this.metrics = metrics;
    this.closed = closed;
    this.url = url;
  }

  /** Opens the port (waits up to 10 s). */
  HttpServer listen() {
    Router router = Router.router(vertx);
    long bodyLimit = 4L * config.maxPromptChars() + 64 * 1024;
    router
        .post("/v1/completions")
        .handler(BodyHandler.create(false).setBodyLimit(bodyLimit))
        .handler(this::complete);
    router
        .post("/v1/feedback")
        .handler(BodyHandler.create(false).setBodyLimit(bodyLimit))
        .handler(this::feedback);
    router.get("/health").handler(this::health);
    router
        .get("/metrics")
        .handler(
            ctx ->
                ctx.response()
                    .putHeader("content-type", "text/plain; version=0.0.4")
                    .end(metrics.scrape()));
    router
        .route()
        .last()
        .handler(
            ctx ->
                error(
                    ctx,
                    404,
                    "no route "
                        + ctx.request().method()
                        + " "
                        + ctx.request().path()
                        + "; try POST /v1/completions, POST /v1/feedback, GET /health, GET /metrics",
                    null));
    router
        .route()
        .failureHandler(
            ctx -> {
              int status = ctx.statusCode() > 0 ? ctx.statusCode() : 500;
              String message =
                  switch (status) {
                    case 413 -> "request body is larger than " + bodyLimit + " bytes";
                    case 405 -> "method not allowed";
                    default -> ctx.failure() == null ? "request failed" : ctx.failure().toString();
                  };
              if (status >= 500) {
                LOG.error("request failed path={}", ctx.request().path(), ctx.failure());
              }
              if (!ctx.response().ended()) {
                error(ctx, status, message, null);
              }
            });
    try {
      return vertx
          .createHttpServer()
          .requestHandler(router)
          .listen(config.port(), config.host())
          .toCompletionStage()
          .toCompletableFuture()
          .get(10, TimeUnit.SECONDS);
    } catch (Exception e) {
      throw new IllegalStateException(
          "cannot open HTTP port " + config.port() + " on " + config.host() + ": " + e, e);
    }
  }

  private void complete(RoutingContext ctx) {
    long received = System.nanoTime();
    CompletionRequest req;
    Deployment d;
    try {
      req = CompletionRequest.parse(parseObject(ctx), config);
      d = deploymentFor(req.model());
    } catch (BadRequestException e) {
      metrics
          .counter(
              "distillery.serving.requests", "deployment", "", "outcome", "rejected-" + e.status())
          .increment();
      error(ctx, e.status(), e.getMessage(), e.param());
      return;
    }
    Deployment.Lease lease = d.lease();
    if (lease == null) {
      error(
          ctx,
          404,
          "model '" + d.id() + "' is not served by this node; it serves " + deployments.servedIds(),
          "model");
      return;
    }
    Context context = vertx.getOrCreateContext();
    boolean queued =
        completions.submit(
            d.id(),
            lease,
            req,
            received,
            reply ->
                context.runOnContext(
                    v ->
                        ctx.response()
                            .setStatusCode(reply.status())
                            .putHeader("content-type", "application/json")
                            .end(reply.body().encode())));
    if (!queued) {
      ctx.response().putHeader("retry-after", "1");
      error(
          ctx,
          503,
          "the node is at capacity (" + config.queueSize() + " requests queued); retry later",
          null);
    }
  }

  private void feedback(RoutingContext ctx) {
    try {
      JsonObject body = parseObject(ctx);
      String correct = stringField(body, "correct");
      String id = stringField(body, "id");
      Served served;
      if (id != null) {
        served = completions.remembered(id);
        if (served == null) {
          throw new BadRequestException(
              404,
              "no completion '"
                  + id
                  + "' on this node (it remembers the last "
                  + CompletionService.REMEMBERED_COMPLETIONS
                  + ")",
              "id");
        }
      } else {
        String prompt = stringField(body, "prompt");
        String output = stringField(body, "output");
        if (prompt == null || prompt.isEmpty() || output == null) {
          throw BadRequestException.invalid(
              prompt == null || prompt.isEmpty() ? "prompt" : "output",
              "send either the completion's id, or prompt and output");
        }
        if (prompt.length() > config.maxPromptChars()) {
          throw BadRequestException.invalid(
              "prompt",
              "prompt has "
                  + prompt.length()
                  + " characters; this node"
                  + " accepts at most "
                  + config.maxPromptChars());
        }
        Deployment d = deploymentFor(stringField(body, "model"));
        Deployment.Routing r = d.routing();
        served = new Served(d.id(), r == null ? "" : r.stable().sha256(), prompt, output, 0);
      }
      completions.flag(served, id != null ? id : "feedback-" + UUID.randomUUID(), correct);
      ctx.response()
          .setStatusCode(202)
          .putHeader("content-type", "application/json")
          .end(
              new JsonObject()
                  .put("accepted", true)
                  .put("reason", MisfireReason.USER_FLAG.name())
                  .put("model", served.deploymentId())
                  .put("artefactSha256", served.sha256())
                  .encode());
    } catch (BadRequestException e) {
      error(ctx, e.status(), e.getMessage(), e.param());
    }
  }

  private void health(RoutingContext ctx) {
    JsonArray list = new JsonArray();
    for (Deployment d : deployments.served()) {
      Deployment.Routing r = d.routing();
      if (r == null) {
        continue;
      }
      JsonObject o = new JsonObject().put("id", d.id()).put("stable", describe(r.stable()));
      o.put(
          "canary",
          r.canary() == null ? null : describe(r.canary()).put("percent", r.canaryPercent()));
      o.put("teacher", r.teacher() == null ? null : describe(r.teacher()));
      list.add(o);
    }
    boolean down = closed.getAsBoolean();
    boolean up = !list.isEmpty() && !down;
    ctx.response()
        .setStatusCode(up ? 200 : 503)
        .putHeader("content-type", "application/json")
        .end(
            new JsonObject()
                .put("status", up ? "UP" : down ? "DOWN" : "LOADING")
                .put("node", config.nodeId())
                .put("url", url.get())
                .put("hosts", new JsonArray(config.deployments()))
                .put("deployments", list)
                .put("queued", completions.queued())
                .put("inFlight", completions.inFlight())
                .encode());
  }

  /** The deployment a request names, or the only one loaded when it names none. */
  private Deployment deploymentFor(String model) {
    List<String> loaded = deployments.servedIds();
    if (model == null) {
      if (loaded.size() == 1) {
        return deployments.get(loaded.getFirst());
      }
      if (loaded.isEmpty()) {
        throw new BadRequestException(503, "no model is loaded on this node yet", "model");
      }
      throw BadRequestException.invalid("model", "model is required: this node serves " + loaded);
    }
    Deployment d = deployments.get(model);
    if (d == null || d.routing() == null) {
      throw new BadRequestException(
          404, "model '" + model + "' is not served by this node; it serves " + loaded, "model");
    }
    return d;
  }

  private static JsonObject parseObject(RoutingContext ctx) {
    String text = ctx.body().asString();
    if (text == null || text.isBlank()) {
      throw BadRequestException.invalid(null, "request body is empty; send a JSON object");
    }
    Object value;
    try {
      value = Json.decodeValue(text);
    } catch (DecodeException e) {
      throw BadRequestException.invalid(
          null, "request body is not valid JSON: " + firstLine(e.getMessage()));
    }
    if (!(value instanceof JsonObject o)) {
      throw BadRequestException.invalid(null, "request body must be a JSON object");
    }
    return o;
  }

  private static String firstLine(String s) {
    if (s == null) {
      return "";
    }
    int nl = s.indexOf('\n');
    return nl < 0 ? s : s.substring(0, nl);
  }

  private static String stringField(JsonObject body, String field) {
    Object v = body.getValue(field);
    if (v != null && !(v instanceof String)) {
      throw BadRequestException.invalid(field, field + " must be a string");
    }
    return (String) v;
  }

  private static JsonObject describe(ServedModel m) {
    return new JsonObject().put("sha256", m.sha256()).put("uri", m.uri());
  }

  private static void error(RoutingContext ctx, int status, String message, String param) {
    ctx.response()
        .setStatusCode(status)
        .putHeader("content-type", "application/json")
        .end(ErrorBody.of(status, message, param).encode());
  }
}
