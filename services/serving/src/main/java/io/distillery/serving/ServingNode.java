package io.distillery.serving;

import io.distillery.stage.ContentHash;
import io.distillery.runtime.artefact.FileArtefactStore;
import io.distillery.runtime.kafka.Topics;
import io.distillery.schemas.common.ArtefactRef;
import io.distillery.schemas.deployment.DeploymentActive;
import io.distillery.schemas.deployment.DeploymentEvent;
import io.distillery.schemas.deployment.DeploymentRequested;
import io.distillery.schemas.deployment.RolledBack;
import io.distillery.schemas.misfire.Misfire;
import io.distillery.schemas.misfire.MisfireReason;
import io.distillery.serving.events.EventSink;
import io.distillery.serving.events.TrafficCounters;
import io.distillery.serving.model.ServedModel;
import io.distillery.serving.rollout.Deployment;
import io.micrometer.core.instrument.Counter;
import io.micrometer.core.instrument.Gauge;
import io.micrometer.core.instrument.Timer;
import io.micrometer.prometheusmetrics.PrometheusConfig;
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
import java.io.IOException;
import java.nio.file.Path;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Collections;
import java.util.IdentityHashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.UUID;
import java.util.concurrent.ArrayBlockingQueue;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.ThreadPoolExecutor;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The serving node: an OpenAI-style HTTP API over the deployments this node hosts, each a {@link Deployment} whose
 * models are swapped atomically as rollout events arrive ({@link #apply}). Generation runs on a bounded pool of
 * worker threads, never on the event loop; a full queue answers 503. Every answer below the confidence threshold
 * escalates to the deployment's teacher, within what is left of the request's deadline; escalations, {@code verify}
 * mismatches and user flags become {@link Misfire} events, handed to a non-blocking {@link EventSink}, and every
 * interval's counts per artefact become ServingTraffic. A timeout is the node's failure, not a wrong answer: it is
 * counted once, as an error (504), and is no misfire.
 *
 * <p>One misfire per request at most, about the deployed artefact that was routed: a {@code verify} mismatch of
 * its answer (WRONG_ANSWER, expected = verify) wins over an escalation (ESCALATED, expected = the teacher's
 * answer), which wins over a low-confidence answer with no teacher to ask (LOW_CONFIDENCE).
 */
public final class ServingNode implements AutoCloseable {

  private static final Logger LOG = LoggerFactory.getLogger(ServingNode.class);
  private static final int REMEMBERED_COMPLETIONS = 10_000;

  private final ServingConfig config;
  private final Vertx vertx;
  private final boolean ownsVertx;
  private final EventSink events;
  private final FileArtefactStore store;
  private final PrometheusMeterRegistry metrics = new PrometheusMeterRegistry(PrometheusConfig.DEFAULT);
  private final Map<String, Deployment> deployments = new ConcurrentHashMap<>();
  private final Map<String, ServedModel> teachers = new ConcurrentHashMap<>();
  private final ThreadPoolExecutor generation;
  private final TrafficCounters traffic;
  private final Map<String, Served> recent = Collections.synchronizedMap(new LinkedHashMap<>(1024, 0.75f, false) {
    @Override
    protected boolean removeEldestEntry(Map.Entry<String, Served> eldest) {
      return size() > REMEMBERED_COMPLETIONS;
    }
  });
  private final Counter misfiresDropped;
  private final Counter eventsDropped;
  private final Counter rejected;
  private final AtomicInteger inFlight = new AtomicInteger();
  private HttpServer http;
  private long trafficTimer = -1;
  private volatile boolean closed;

  /** A completion remembered for {@code /v1/feedback}. */
  private record Served(String deploymentId, String sha256, String prompt, String output, double confidence) {}

  private ServingNode(ServingConfig config, Vertx vertx, boolean ownsVertx, EventSink events) throws IOException {
    this.config = config;
    this.vertx = vertx;
    this.ownsVertx = ownsVertx;
    this.events = events;
    this.store = config.storeRoot() == null ? null : new FileArtefactStore(config.storeRoot(), config.readRoots());
    this.traffic = new TrafficCounters(config.nodeId(), System.currentTimeMillis());
    AtomicInteger threads = new AtomicInteger();
    this.generation = new ThreadPoolExecutor(config.workers(), config.workers(), 0, TimeUnit.MILLISECONDS,
        new ArrayBlockingQueue<>(config.queueSize()), r -> {
          Thread t = new Thread(r, "serving-generate-" + threads.incrementAndGet());
          t.setDaemon(true);
          return t;
        }, new ThreadPoolExecutor.AbortPolicy());
    this.misfiresDropped = Counter.builder("distillery.misfires.dropped")
        .description("Misfire events lost because the buffer was full or Kafka unreachable").register(metrics);
    this.eventsDropped = Counter.builder("distillery.serving.events.dropped")
        .description("Traffic and deployment events lost because the buffer was full or Kafka unreachable")
        .register(metrics);
    this.rejected = Counter.builder("distillery.serving.rejected")
        .description("Requests refused with 503 because the generation queue was full").register(metrics);
    Gauge.builder("distillery.serving.queue", generation, e -> e.getQueue().size()).register(metrics);
    Gauge.builder("distillery.serving.inflight", inFlight, AtomicInteger::get).register(metrics);
  }

  /** Starts a node on its own Vert.x instance. */
  public static ServingNode start(ServingConfig config, EventSink events) throws IOException {
    return start(config, Vertx.vertx(), true, events);
  }

  /** Starts a node on a shared Vert.x instance (which the caller closes). */
  public static ServingNode start(ServingConfig config, Vertx vertx, EventSink events) throws IOException {
    return start(config, vertx, false, events);
  }

  private static ServingNode start(ServingConfig config, Vertx vertx, boolean owns, EventSink events)
      throws IOException {
    ServingNode node = new ServingNode(config, vertx, owns, events);
    try {
      node.listen();
    } catch (RuntimeException e) {
      node.close();
      throw e;
    }
    node.trafficTimer = vertx.setPeriodic(config.trafficIntervalMs(), t -> node.publishTraffic());
    LOG.info("serving node started node={} url={} deployments={}", config.nodeId(), node.url(),
        config.deployments());
    return node;
  }

  // ---------------------------------------------------------------- rollout

  /**
   * Applies one event of {@code distillery.deployments} for a deployment this node hosts: loads the requested
   * artefact (blocking: call it off the request path), swaps it in as stable or as a canary, and announces
   * DeploymentActive; or drops the canary on RolledBack. Events for other deployments are ignored.
   *
   * @throws IOException if the artefact cannot be resolved or loaded; what the node serves is unchanged then
   */
  public synchronized void apply(DeploymentEvent event) throws IOException {
    String id = event.getDeploymentId();
    if (!config.hosts(id)) {
      return;
    }
    try {
      switch (event.getPayload()) {
        case DeploymentRequested req -> deploy(id, event.getRunId(), req);
        case RolledBack rb -> rollBack(id, rb);
        case DeploymentActive ignored -> { }
        default -> throw new IllegalArgumentException("unknown deployment payload " + event.getPayload().getClass());
      }
    } catch (IOException | RuntimeException e) {
      metrics.counter("distillery.serving.rollout.failures", "deployment", id).increment();
      throw e;
    } finally {
      retireUnusedTeachers();
    }
  }

  private void deploy(String id, String runId, DeploymentRequested req) throws IOException {
    ArtefactRef ref = req.getArtefact();
    int percent = req.getCanaryPercent();
    if (percent < 0 || percent > 100) {
      throw new IllegalArgumentException("deployment " + id + ": canaryPercent must be in [0, 100], got " + percent);
    }
    ServedModel teacher = teacher(req.getTeacher());
    Deployment current = deployments.get(id);
    Deployment.Routing routing = current == null ? null : current.routing();
    ServedModel model = loaded(routing, ref.getSha256());
    long start = System.nanoTime();
    if (model == null) {
      model = ServedModel.load(resolve(ref.getUri()), ref.getSha256(), ref.getUri());
    }
    Deployment d = deployments.computeIfAbsent(id, Deployment::new);
    boolean canary = percent < 100 && routing != null && !routing.stable().sha256().equals(ref.getSha256());
    if (canary) {
      d.canary(model, percent, teacher);
    } else {
      d.promote(model, teacher);
    }
    metrics.counter("distillery.serving.swaps", "deployment", id, "role", canary ? "canary" : "stable").increment();
    LOG.info("deployment={} artefact={} role={} canaryPercent={} loadMs={} node={}", id, ref.getSha256(),
        canary ? "canary" : "stable", percent, (System.nanoTime() - start) / 1_000_000, config.nodeId());
    DeploymentEvent active = DeploymentEvent.newBuilder().setDeploymentId(id).setRunId(runId).setTs(Instant.now())
        .setPayload(DeploymentActive.newBuilder().setNode(config.nodeId()).setUrl(url())
            .setArtefactSha256(ref.getSha256()).setCanaryPercent(canary ? percent : 100).build())
        .build();
    events.offer(Topics.DEPLOYMENTS, id, active, () -> {
      eventsDropped.increment();
      LOG.warn("DeploymentActive not published deployment={} artefact={}", id, ref.getSha256());
    });
  }

  private void rollBack(String id, RolledBack rb) throws IOException {
    Deployment d = deployments.get(id);
    if (d == null) {
      return;
    }
    boolean dropped = d.dropCanary();
    ArtefactRef restored = rb.getRestored();
    Deployment.Routing r = d.routing();
    if (restored != null && r != null && !r.stable().sha256().equals(restored.getSha256())) {
      ServedModel model = ServedModel.load(resolve(restored.getUri()), restored.getSha256(), restored.getUri());
      d.promote(model, r.teacher());
    }
    LOG.info("deployment={} rolled back canaryDropped={} stable={} reason={}", id, dropped,
        d.routing() == null ? null : d.routing().stable().sha256(), rb.getReason());
  }

  /**
   * Serves a checkpoint or package directory as the stable artefact of {@code deploymentId}, without Kafka (the
   * bench and local use); the artefact sha is the directory's content hash.
   */
  public synchronized String serveLocal(String deploymentId, Path dir, Path teacherDir) throws IOException {
    String sha = ContentHash.of(dir);
    ServedModel model = ServedModel.load(dir, sha, dir.toUri().toString());
    try {
      ServedModel teacher = teacherDir == null ? null
          : teacher(ContentHash.of(teacherDir), teacherDir.toUri().toString(), teacherDir);
      deployments.computeIfAbsent(deploymentId, Deployment::new).promote(model, teacher);
    } catch (IOException | RuntimeException e) {
      model.retire();
      throw e;
    } finally {
      retireUnusedTeachers();
    }
    return sha;
  }

  /** Serves already loaded models as the stable artefact and teacher of {@code deploymentId} (tests). */
  synchronized void serve(String deploymentId, ServedModel model, ServedModel teacher) {
    deployments.computeIfAbsent(deploymentId, Deployment::new).promote(model, teacher);
  }

  private static ServedModel loaded(Deployment.Routing r, String sha) {
    if (r == null) {
      return null;
    }
    if (r.stable().sha256().equals(sha)) {
      return r.stable();
    }
    return r.canary() != null && r.canary().sha256().equals(sha) ? r.canary() : null;
  }

  /** The teacher a rollout names, or null. */
  private ServedModel teacher(ArtefactRef ref) throws IOException {
    return ref == null ? null : teacher(ref.getSha256(), ref.getUri(), null);
  }

  /**
   * The teacher with this content hash, loaded once per node (from {@code dir}, else by resolving {@code uri}) and
   * shared by every deployment that names the same artefact, whether by a rollout or {@link #serveLocal}. Called
   * with the node's lock held, as is {@link #retireUnusedTeachers}.
   */
  private ServedModel teacher(String sha, String uri, Path dir) throws IOException {
    ServedModel t = teachers.get(sha);
    if (t == null) {
      t = ServedModel.load(dir != null ? dir : resolve(uri), sha, uri);
      teachers.put(sha, t);
      LOG.info("teacher loaded sha256={} uri={}", sha, uri);
    }
    return t;
  }

  /**
   * Drops the teachers no deployment routes to any more (a rollout named another one) and retires them: the
   * weights are freed when the last escalation using them ends.
   */
  private void retireUnusedTeachers() {
    Set<ServedModel> used = Collections.newSetFromMap(new IdentityHashMap<>());
    for (Deployment d : deployments.values()) {
      Deployment.Routing r = d.routing();
      if (r != null && r.teacher() != null) {
        used.add(r.teacher());
      }
    }
    teachers.values().removeIf(t -> {
      if (used.contains(t)) {
        return false;
      }
      t.retire();
      LOG.info("teacher retired sha256={} uri={} (no deployment names it)", t.sha256(), t.uri());
      return true;
    });
  }

  private Path resolve(String uri) throws IOException {
    if (store == null) {
      throw new IOException("this node has no artefact store configured; cannot resolve " + uri);
    }
    return store.resolve(uri);
  }

  // ---------------------------------------------------------------- HTTP

  private void listen() {
    Router router = Router.router(vertx);
    long bodyLimit = 4L * config.maxPromptChars() + 64 * 1024;
    router.post("/v1/completions").handler(BodyHandler.create(false).setBodyLimit(bodyLimit))
        .handler(this::complete);
    router.post("/v1/feedback").handler(BodyHandler.create(false).setBodyLimit(bodyLimit)).handler(this::feedback);
    router.get("/health").handler(this::health);
    router.get("/metrics").handler(ctx -> ctx.response().putHeader("content-type", "text/plain; version=0.0.4")
        .end(metrics.scrape()));
    router.route().last().handler(ctx -> error(ctx, 404, "no route " + ctx.request().method() + " "
        + ctx.request().path() + "; try POST /v1/completions, POST /v1/feedback, GET /health, GET /metrics", null));
    router.route().failureHandler(ctx -> {
      int status = ctx.statusCode() > 0 ? ctx.statusCode() : 500;
      String message = switch (status) {
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
      http = vertx.createHttpServer().requestHandler(router).listen(config.port(), config.host())
          .toCompletionStage().toCompletableFuture().get(10, TimeUnit.SECONDS);
    } catch (Exception e) {
      throw new IllegalStateException("cannot open HTTP port " + config.port() + " on " + config.host() + ": " + e,
          e);
    }
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
      throw BadRequestException.invalid(null, "request body is not valid JSON: " + firstLine(e.getMessage()));
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

  /** The deployment a request names, or the only one loaded when it names none. */
  private Deployment deploymentFor(String model) {
    List<String> loaded = servedIds();
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
      throw new BadRequestException(404, "model '" + model + "' is not served by this node; it serves " + loaded,
          "model");
    }
    return d;
  }

  private List<String> servedIds() {
    return deployments.values().stream().filter(d -> d.routing() != null).map(Deployment::id).sorted().toList();
  }

  private void complete(RoutingContext ctx) {
    long received = System.nanoTime();
    CompletionRequest req;
    Deployment d;
    try {
      req = CompletionRequest.parse(parseObject(ctx), config);
      d = deploymentFor(req.model());
    } catch (BadRequestException e) {
      metrics.counter("distillery.serving.requests", "deployment", "", "outcome", "rejected-" + e.status())
          .increment();
      error(ctx, e.status(), e.getMessage(), e.param());
      return;
    }
    Deployment.Lease lease = d.lease();
    if (lease == null) {
      error(ctx, 404, "model '" + d.id() + "' is not served by this node; it serves " + servedIds(), "model");
      return;
    }
    Context context = vertx.getOrCreateContext();
    inFlight.incrementAndGet();
    try {
      generation.execute(() -> {
        Reply reply;
        try {
          reply = answer(d.id(), lease, req, received);
        } catch (RuntimeException | Error e) {
          // whatever went wrong, the client gets an answer and the node keeps serving
          LOG.error("generation failed deployment={} artefact={}", d.id(), lease.model().sha256(), e);
          traffic.error(d.id(), lease.model().sha256());
          reply = new Reply(500, serverErrorBody("generation failed: " + e), "error");
        } finally {
          lease.close();
          inFlight.decrementAndGet();
        }
        Reply done = reply;
        metrics.counter("distillery.serving.requests", "deployment", d.id(), "outcome", done.outcome()).increment();
        Timer.builder("distillery.serving.latency").tag("deployment", d.id()).publishPercentiles(0.5, 0.99)
            .register(metrics).record(System.nanoTime() - received, TimeUnit.NANOSECONDS);
        context.runOnContext(v -> ctx.response().setStatusCode(done.status())
            .putHeader("content-type", "application/json").end(done.body().encode()));
      });
    } catch (RejectedExecutionException e) {
      lease.close();
      inFlight.decrementAndGet();
      rejected.increment();
      ctx.response().putHeader("retry-after", "1");
      error(ctx, 503, "the node is at capacity (" + config.queueSize() + " requests queued); retry later", null);
    }
  }

  private record Reply(int status, JsonObject body, String outcome) {}

  /** Runs on a generation thread. */
  private Reply answer(String deploymentId, Deployment.Lease lease, CompletionRequest req, long received) {
    ServedModel model = lease.model();
    String sha = model.sha256();
    long deadline = received + config.requestTimeout().toNanos();
    String id = "cmpl-" + UUID.randomUUID();
    traffic.request(deploymentId, sha);
    ServedModel.Answer answer = model.answer(req.prompt(), req.maxTokens(), req.sampling(), deadline);
    if (answer.timedOut()) {
      traffic.error(deploymentId, sha); // once, as an error: a timeout says nothing about the answer's quality
      return new Reply(504, serverErrorBody("generation did not finish within " + config.requestTimeout().toMillis()
          + " ms (" + answer.completionTokens() + " tokens generated)"), "timeout");
    }
    boolean low = answer.confidence() < config.confidenceThreshold();
    ServedModel.Answer teacherAnswer = null;
    ServedModel teacher = lease.teacher();
    if (low && teacher != null && teacher.tryAcquire()) {
      try {
        teacherAnswer = teacher.answer(req.prompt(), req.maxTokens(), req.sampling(), deadline);
      } finally {
        teacher.release();
      }
      if (teacherAnswer.timedOut()) {
        // the teacher could not finish in what was left of the request's time: the student's answer stands
        metrics.counter("distillery.serving.escalations.timedout", "deployment", deploymentId).increment();
        teacherAnswer = null;
      } else {
        metrics.counter("distillery.serving.escalations", "deployment", deploymentId).increment();
      }
    }
    ServedModel.Answer returned = teacherAnswer != null ? teacherAnswer : answer;
    if (req.verify() != null && !req.verify().equals(answer.text())) {
      misfire(deploymentId, sha, id, req.prompt(), answer.text(), req.verify(), MisfireReason.WRONG_ANSWER,
          answer.confidence());
    } else if (teacherAnswer != null) {
      misfire(deploymentId, sha, id, req.prompt(), answer.text(), teacherAnswer.text(), MisfireReason.ESCALATED,
          answer.confidence());
    } else if (low) {
      misfire(deploymentId, sha, id, req.prompt(), answer.text(), null, MisfireReason.LOW_CONFIDENCE,
          answer.confidence());
    }
    recent.put(id, new Served(deploymentId, sha, req.prompt(), returned.text(), answer.confidence()));
    int completionTokens = returned.completionTokens();
    JsonObject body = new JsonObject().put("id", id).put("object", "text_completion")
        .put("created", System.currentTimeMillis() / 1000).put("model", deploymentId)
        .put("choices", new JsonArray().add(new JsonObject().put("text", returned.text()).put("index", 0)
            .put("finish_reason", returned.finishReason()).putNull("logprobs")))
        .put("usage", new JsonObject().put("prompt_tokens", answer.promptTokens())
            .put("completion_tokens", completionTokens).put("total_tokens", answer.promptTokens() + completionTokens))
        .put("distillery", new JsonObject().put("artefactSha256", sha).put("confidence", answer.confidence())
            .put("escalated", teacherAnswer != null).put("role", lease.role().name().toLowerCase())
            .put("node", config.nodeId()));
    return new Reply(200, body, "ok");
  }

  private void misfire(String deploymentId, String sha, String requestId, String prompt, String output,
      String expected, MisfireReason reason, double confidence) {
    traffic.misfire(deploymentId, sha);
    metrics.counter("distillery.misfires", "deployment", deploymentId, "reason", reason.name()).increment();
    Misfire m = Misfire.newBuilder().setDeploymentId(deploymentId).setNode(config.nodeId()).setArtefactSha256(sha)
        .setRequestId(requestId).setPrompt(prompt).setOutput(output).setExpected(expected).setReason(reason)
        .setConfidence(Double.isFinite(confidence) ? confidence : -Double.MAX_VALUE).setTs(Instant.now()).build();
    events.offer(Topics.MISFIRES, deploymentId, m, misfiresDropped::increment);
  }

  private void feedback(RoutingContext ctx) {
    try {
      JsonObject body = parseObject(ctx);
      String correct = stringField(body, "correct");
      String id = stringField(body, "id");
      Served served;
      if (id != null) {
        served = recent.get(id);
        if (served == null) {
          throw new BadRequestException(404, "no completion '" + id + "' on this node (it remembers the last "
              + REMEMBERED_COMPLETIONS + ")", "id");
        }
      } else {
        String prompt = stringField(body, "prompt");
        String output = stringField(body, "output");
        if (prompt == null || prompt.isEmpty() || output == null) {
          throw BadRequestException.invalid(prompt == null || prompt.isEmpty() ? "prompt" : "output",
              "send either the completion's id, or prompt and output");
        }
        if (prompt.length() > config.maxPromptChars()) {
          throw BadRequestException.invalid("prompt", "prompt has " + prompt.length() + " characters; this node"
              + " accepts at most " + config.maxPromptChars());
        }
        Deployment d = deploymentFor(stringField(body, "model"));
        Deployment.Routing r = d.routing();
        served = new Served(d.id(), r == null ? "" : r.stable().sha256(), prompt, output, 0);
      }
      String requestId = id != null ? id : "feedback-" + UUID.randomUUID();
      misfire(served.deploymentId(), served.sha256(), requestId, served.prompt(), served.output(), correct,
          MisfireReason.USER_FLAG, served.confidence());
      ctx.response().setStatusCode(202).putHeader("content-type", "application/json")
          .end(new JsonObject().put("accepted", true).put("reason", MisfireReason.USER_FLAG.name())
              .put("model", served.deploymentId()).put("artefactSha256", served.sha256()).encode());
    } catch (BadRequestException e) {
      error(ctx, e.status(), e.getMessage(), e.param());
    }
  }

  private static String stringField(JsonObject body, String field) {
    Object v = body.getValue(field);
    if (v != null && !(v instanceof String)) {
      throw BadRequestException.invalid(field, field + " must be a string");
    }
    return (String) v;
  }

  private void health(RoutingContext ctx) {
    JsonArray list = new JsonArray();
    Map<String, Deployment> sorted = new TreeMap<>(deployments);
    for (Deployment d : sorted.values()) {
      Deployment.Routing r = d.routing();
      if (r == null) {
        continue;
      }
      JsonObject o = new JsonObject().put("id", d.id()).put("stable", describe(r.stable()));
      o.put("canary", r.canary() == null ? null : describe(r.canary()).put("percent", r.canaryPercent()));
      o.put("teacher", r.teacher() == null ? null : describe(r.teacher()));
      list.add(o);
    }
    boolean up = !list.isEmpty() && !closed;
    ctx.response().setStatusCode(up ? 200 : 503).putHeader("content-type", "application/json")
        .end(new JsonObject().put("status", up ? "UP" : closed ? "DOWN" : "LOADING").put("node", config.nodeId())
            .put("url", url()).put("hosts", new JsonArray(config.deployments())).put("deployments", list)
            .put("queued", generation.getQueue().size()).put("inFlight", inFlight.get()).encode());
  }

  private static JsonObject describe(ServedModel m) {
    return new JsonObject().put("sha256", m.sha256()).put("uri", m.uri());
  }

  private static JsonObject errorBody(String message, String param) {
    return new JsonObject().put("error", new JsonObject().put("message", message)
        .put("type", "invalid_request_error").put("param", param));
  }

  /** A 5xx body: the node failed, not the request. */
  private static JsonObject serverErrorBody(String message) {
    JsonObject body = errorBody(message, null);
    body.getJsonObject("error").put("type", "server_error");
    return body;
  }

  private static void error(RoutingContext ctx, int status, String message, String param) {
    JsonObject body = errorBody(message, param);
    if (status >= 500) {
      body.getJsonObject("error").put("type", "server_error");
    }
    ctx.response().setStatusCode(status).putHeader("content-type", "application/json").end(body.encode());
  }

  // ---------------------------------------------------------------- traffic, accessors, shutdown

  /** Hands this interval's ServingTraffic records to the sink (never blocks). */
  public void publishTraffic() {
    for (var t : traffic.drain(System.currentTimeMillis())) {
      events.offer(Topics.SERVING_TRAFFIC, t.getDeploymentId(), t, eventsDropped::increment);
    }
  }

  /** The base URL clients use, as announced in DeploymentActive. */
  public String url() {
    if (!config.publicUrl().isBlank()) {
      return config.publicUrl();
    }
    String host = config.host().equals("0.0.0.0") || config.host().equals("::") ? "127.0.0.1" : config.host();
    return "http://" + host + ":" + port();
  }

  public int port() {
    return http == null ? -1 : http.actualPort();
  }

  public ServingConfig config() {
    return config;
  }

  public PrometheusMeterRegistry metrics() {
    return metrics;
  }

  /** The routing of a deployment, or null when it is not loaded. */
  public Deployment.Routing routing(String deploymentId) {
    Deployment d = deployments.get(deploymentId);
    return d == null ? null : d.routing();
  }

  public double misfiresDropped() {
    return misfiresDropped.count();
  }

  @Override
  public void close() {
    if (closed) {
      return;
    }
    closed = true;
    if (trafficTimer >= 0) {
      vertx.cancelTimer(trafficTimer);
    }
    if (http != null) {
      try {
        http.close().toCompletionStage().toCompletableFuture().get(5, TimeUnit.SECONDS);
      } catch (Exception e) {
        LOG.warn("HTTP server did not close cleanly node={} error={}", config.nodeId(), e.toString());
      }
    }
    generation.shutdown();
    try {
      if (!generation.awaitTermination(config.requestTimeout().toMillis() + 1000, TimeUnit.MILLISECONDS)) {
        generation.shutdownNow();
      }
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
    publishTraffic();
    List<Deployment> all = new ArrayList<>(deployments.values());
    all.forEach(Deployment::close);
    teachers.values().forEach(ServedModel::retire);
    events.close();
    if (ownsVertx) {
      vertx.close();
    }
    metrics.close();
    LOG.info("serving node stopped node={}", config.nodeId());
  }
}
