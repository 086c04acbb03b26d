package io.distillery.serving;

import io.distillery.runtime.artefact.FileArtefactStore;
import io.distillery.runtime.kafka.Topics;
import io.distillery.schemas.deployment.DeploymentEvent;
import io.distillery.serving.events.EventSink;
import io.distillery.serving.events.TrafficCounters;
import io.distillery.serving.model.ServedModel;
import io.distillery.serving.rollout.Deployment;
import io.distillery.serving.rollout.Deployments;
import io.micrometer.core.instrument.Counter;
import io.micrometer.prometheusmetrics.PrometheusConfig;
import io.micrometer.prometheusmetrics.PrometheusMeterRegistry;
import io.vertx.core.Vertx;
import io.vertx.core.http.HttpServer;
import java.io.IOException;
import java.nio.file.Path;
import java.util.concurrent.TimeUnit;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The serving node: an OpenAI-style HTTP API ({@link HttpApi}) over the deployments this node hosts
 * ({@link Deployments}, whose models are swapped atomically as rollout events arrive, {@link
 * #apply}), answered by the {@link CompletionService} (bounded generation pool, deadlines,
 * escalation to the teacher, the {@link MisfirePolicy}'s misfires). This class wires them,
 * publishes every interval's counts per artefact as ServingTraffic, and stops them in order.
 */
public final class ServingNode implements AutoCloseable {

  private static final Logger LOG = LoggerFactory.getLogger(ServingNode.class);

  private final ServingConfig config;
  private final Vertx vertx;
  private final boolean ownsVertx;
  private final EventSink events;
  private final PrometheusMeterRegistry metrics =
      new PrometheusMeterRegistry(PrometheusConfig.DEFAULT);
  private final TrafficCounters traffic;
  private final Counter eventsDropped;
  private final Deployments deployments;
  private final CompletionService completions;
  private HttpServer http;
  private long trafficTimer = -1;
  private volatile boolean closed;

  private ServingNode(ServingConfig config, Vertx vertx, boolean ownsVertx, EventSink events)
      throws IOException {
    this.config = config;
    this.vertx = vertx;
    this.ownsVertx = ownsVertx;
    this.events = events;
    this.traffic = new TrafficCounters(config.nodeId(), System.currentTimeMillis());
    this.eventsDropped =
        Counter.builder("distillery.serving.events.dropped")
            .description(
                "Traffic and deployment events lost because the buffer was full or Kafka unreachable")
            .register(metrics);
    FileArtefactStore store =
        config.storeRoot() == null
            ? null
            : new FileArtefactStore(config.storeRoot(), config.readRoots());
    this.deployments =
        new Deployments(
            config.nodeId(), config::hosts, store, events, metrics, eventsDropped, this::url);
    this.completions = new CompletionService(config, events, traffic, metrics);
  }

  /** Starts a node on its own Vert.x instance. */
  public static ServingNode start(ServingConfig config, EventSink events) throws IOException {
    return start(config, Vertx.vertx(), true, events);
  }

  /** Starts a node on a shared Vert.x instance (which the caller closes). */
  public static ServingNode start(ServingConfig config, Vertx vertx, EventSink events)
      throws IOException {
    return start(config, vertx, false, events);
  }

  private static ServingNode start(
      ServingConfig config, Vertx vertx, boolean owns, EventSink events) throws IOException {
    ServingNode node = new ServingNode(config, vertx, owns, events);
    try {
      node.http =
          new HttpApi(
                  vertx,
                  config,
                  node.completions,
                  node.deployments,
                  node.metrics,
                  () -> node.closed,
                  node::url)
              .listen();
    } catch (RuntimeException e) {
      node.close();
      throw e;
    }
    node.trafficTimer = vertx.setPeriodic(config.trafficIntervalMs(), t -> node.publishTraffic());
    LOG.info(
        "serving node started node={} url={} deployments={}",
        config.nodeId(),
        node.url(),
        config.deployments());
    return node;
  }

  /**
   * Applies one event of {@code distillery.deployments} for a deployment this node hosts (see
   * {@link Deployments#apply}): blocking, call it off the request path.
   *
   * @throws IOException if the artefact cannot be resolved or loaded; what the node serves is
   *     unchanged then
   */
  public void apply(DeploymentEvent event) throws IOException {
    deployments.apply(event);
  }

  /**
   * Serves a checkpoint or package directory as the stable artefact of {@code deploymentId},
   * without Kafka (the bench and local use); the artefact sha is the directory's content hash.
   */
  public String serveLocal(String deploymentId, Path dir, Path teacherDir) throws IOException {
    return deployments.serveLocal(deploymentId, dir, teacherDir);
  }

  /**
   * Serves already loaded models as the stable artefact and teacher of {@code deploymentId}
   * (tests).
   */
  void serve(String deploymentId, ServedModel model, ServedModel teacher) {
    deployments.serve(deploymentId, model, teacher);
  }

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
    String host =
        config.host().equals("0.0.0.0") || config.host().equals("::") ? "127.0.0.1" : config.host();
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
    return deployments.routing(deploymentId);
  }

  public double misfiresDropped() {
    return completions.misfiresDropped();
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
        LOG.warn(
            "HTTP server did not close cleanly node={} error={}", config.nodeId(), e.toString());
      }
    }
    completions.close();
    publishTraffic();
    deployments.close();
    events.close();
    if (ownsVertx) {
      vertx.close();
    }
    metrics.close();
    LOG.info("serving node stopped node={}", config.nodeId());
  }
}
