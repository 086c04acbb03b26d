package io.distillery.feedback;

import io.distillery.runtime.artefact.FileArtefactStore;
import io.distillery.runtime.kafka.DeadLetterHandler;
import io.distillery.runtime.kafka.KafkaSettings;
import io.distillery.runtime.kafka.StreamsLifecycle;
import io.distillery.runtime.kafka.TopicAdmin;
import io.distillery.runtime.kafka.Topics;
import io.distillery.runtime.serde.SchemaRegistryClient;
import io.distillery.schemas.deployment.DeploymentEvent;
import io.micrometer.prometheusmetrics.PrometheusConfig;
import io.micrometer.prometheusmetrics.PrometheusMeterRegistry;
import io.vertx.core.Vertx;
import io.vertx.core.http.HttpServer;
import io.vertx.ext.web.Router;
import io.vertx.ext.web.RoutingContext;
import java.io.IOException;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StoreQueryParameters;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.errors.InvalidStateStoreException;
import org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler;
import org.apache.kafka.streams.state.QueryableStoreTypes;
import org.apache.kafka.streams.state.ReadOnlyKeyValueStore;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Runs the feedback topology and its HTTP view: {@code GET /misfires}, {@code GET
 * /misfires/{deploymentId}}, {@code GET /health}, {@code GET /metrics} (Prometheus). The view reads
 * this instance's stores; with several instances each answers for the deployments (partitions) it
 * owns.
 */
public final class FeedbackApp implements AutoCloseable {

  private static final Logger LOG = LoggerFactory.getLogger(FeedbackApp.class);

  private final FeedbackConfig config;
  private final KafkaStreams streams;
  private final TopicAdmin admin;
  private final PrometheusMeterRegistry registry =
      new PrometheusMeterRegistry(PrometheusConfig.DEFAULT);
  private final FeedbackMetrics metrics = new FeedbackMetrics(registry);
  private final MisfiresReport report;
  private final Vertx vertx;
  private final boolean ownsVertx;
  private HttpServer http;

  private FeedbackApp(FeedbackConfig config, Vertx vertx) throws IOException {
    this.config = config;
    KafkaSettings kafka =
        KafkaSettings.of(config.bootstrap(), config.registryUrl())
            .withRegistryRetry(
                SchemaRegistryClient
                    .OUTAGE_RETRY_BUDGET); // stream threads wait out a registry restart
    this.admin = new TopicAdmin(kafka);
    admin.ensurePlatformTopics();
    admin.ensure(
        List.of(
            Topics.SERVING_TRAFFIC,
            Topics.dlq(Topics.MISFIRES),
            Topics.dlq(Topics.SERVING_TRAFFIC),
            Topics.dlq(Topics.DEPLOYMENTS)),
        Map.of());
    TriggerPolicy policy = TriggerPolicy.of(config);
    var topology =
        FeedbackTopology.build(
            kafka::serde,
            policy,
            new MisfireDataset(new FileArtefactStore(config.storeRoot()), config.heldoutPercent()),
            RedistillRuns.of(config),
            metrics,
            config.applicationId(),
            config.tick());

    Properties p = new Properties();
    p.putAll(kafka.streams());
    p.put(StreamsConfig.APPLICATION_ID_CONFIG, config.applicationId());
    p.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, config.bootstrap());
    p.put(StreamsConfig.STATE_DIR_CONFIG, config.stateDir().toAbsolutePath().toString());
    p.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, 100);
    p.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, config.threads());
    p.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, config.guarantee());
    p.put(StreamsConfig.STATESTORE_CACHE_MAX_BYTES_CONFIG, 0);
    p.put(
        StreamsConfig.DESERIALIZATION_EXCEPTION_HANDLER_CLASS_CONFIG,
        CountingDeadLetterHandler.class);
    p.put(CountingDeadLetterHandler.METRICS, metrics);
    p.put(DeadLetterHandler.REGISTRY_URL, config.registryUrl());
    p.put(DeadLetterHandler.CONSUMER_NAME, config.applicationId());
    p.put(StreamsConfig.producerPrefix(ProducerConfig.LINGER_MS_CONFIG), 0);
    p.put(StreamsConfig.consumerPrefix(ConsumerConfig.FETCH_MAX_WAIT_MS_CONFIG), 20);
    p.put(StreamsConfig.consumerPrefix(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG), "earliest");
    p.put(StreamsConfig.POLL_MS_CONFIG, 20);
    this.streams = new KafkaStreams(topology, p);
    streams.setUncaughtExceptionHandler(
        e -> {
          LOG.error("feedback stream thread failed; replacing it", e);
          return StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse.REPLACE_THREAD;
        });
    this.report =
        new MisfiresReport(
            policy,
            new MisfiresReport.Stores() {
              @Override
              public ReadOnlyKeyValueStore<String, DeploymentEvent> deployments() {
                return store(MisfireWindowProcessor.DEPLOYMENTS);
              }

              @Override
              public ReadOnlyKeyValueStore<String, MisfireWindow> windows() {
                return store(MisfireWindowProcessor.WINDOWS);
              }

              @Override
              public ReadOnlyKeyValueStore<String, TriggerState> triggers() {
                return store(MisfireWindowProcessor.TRIGGERS);
              }
            });
    this.ownsVertx = vertx == null;
    this.vertx = vertx == null ? Vertx.vertx() : vertx;
  }

  private <V> ReadOnlyKeyValueStore<String, V> store(String name) {
    return streams.store(
        StoreQueryParameters.fromNameAndType(name, QueryableStoreTypes.<String, V>keyValueStore()));
  }

  /**
   * Starts the topology and, unless {@code httpPort} is -1, the HTTP view on {@code vertx} (its own
   * when null).
   */
  public static FeedbackApp start(FeedbackConfig config, Vertx vertx) throws Exception {
    FeedbackApp app = new FeedbackApp(config, vertx);
    app.streams.start();
    if (config.httpPort() >= 0) {
      app.http = app.vertx.createHttpServer().requestHandler(app.router());
      app.http
          .listen(config.httpPort(), config.httpHost())
          .toCompletionStage()
          .toCompletableFuture()
          .get(10, TimeUnit.SECONDS);
    }
    LOG.info(
        "feedback started: applicationId={} bootstrap={} url={}",
        config.applicationId(),
        config.bootstrap(),
        app.url());
    return app;
  }

  private Router router() {
    Router r = Router.router(vertx);
    r.get("/misfires").blockingHandler(ctx -> answer(ctx, null));
    r.get("/misfires/:deploymentId")
        .blockingHandler(ctx -> answer(ctx, ctx.pathParam("deploymentId")));
    r.get("/health")
        .handler(
            ctx ->
                ctx.response()
                    .setStatusCode(streams.state() == KafkaStreams.State.RUNNING ? 200 : 503)
                    .end(streams.state().name() + "\n"));
    r.get("/metrics")
        .handler(
            ctx ->
                ctx.response()
                    .putHeader("content-type", "text/plain; version=0.0.4")
                    .end(registry.scrape()));
    return r;
  }

  private void answer(RoutingContext ctx, String deploymentId) {
    var res = ctx.response().putHeader("content-type", "application/json");
    try {
      long now = System.currentTimeMillis();
      if (deploymentId == null) {
        res.end(report.all(now).toPrettyString());
        return;
      }
      var one = report.one(deploymentId, now);
      if (one.isEmpty()) {
        res.setStatusCode(404)
            .end(
                "{\"error\":\"no deployment '"
                    + deploymentId.replace("\"", "")
                    + "' is known to the feedback service\"}");
        return;
      }
      var body = one.get();
      body.set("thresholds", report.thresholds());
      res.end(body.toPrettyString());
    } catch (InvalidStateStoreException e) {
      res.setStatusCode(503)
          .end("{\"error\":\"state stores are not ready (" + streams.state() + ")\"}");
    }
  }

  /** The base URL of the HTTP view, or null when it is disabled. */
  public String url() {
    return http == null ? null : "http://" + config.httpHost() + ":" + http.actualPort();
  }

  public FeedbackMetrics metrics() {
    return metrics;
  }

  /** Blocks until the Streams app is RUNNING (all tasks assigned and restored). */
  public FeedbackApp awaitRunning(Duration timeout) throws InterruptedException {
    StreamsLifecycle.awaitRunning(streams, timeout, "feedback");
    return this;
  }

  public KafkaStreams.State state() {
    return streams.state();
  }

  @Override
  public void close() {
    if (http != null) {
      http.close().toCompletionStage().toCompletableFuture().orTimeout(10, TimeUnit.SECONDS).join();
    }
    StreamsLifecycle.closeLeavingGroup(streams);
    admin.close();
    registry.close();
    if (ownsVertx) {
      vertx.close();
    }
  }
}
