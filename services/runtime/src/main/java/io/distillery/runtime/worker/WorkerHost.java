package io.distillery.runtime.worker;

import io.distillery.runtime.artefact.ArtefactStore;
import io.distillery.runtime.artefact.FileArtefactStore;
import io.distillery.runtime.kafka.DeadLetters;
import io.distillery.runtime.kafka.KafkaSettings;
import io.distillery.runtime.kafka.TopicAdmin;
import io.distillery.runtime.kafka.Topics;
import io.distillery.schemas.dlq.DeadLetter;
import io.distillery.schemas.job.JobEvent;
import io.distillery.schemas.job.StageJob;
import io.distillery.stage.StageDescriptor;
import io.micrometer.prometheusmetrics.PrometheusConfig;
import io.micrometer.prometheusmetrics.PrometheusMeterRegistry;
import io.vertx.core.Vertx;
import io.vertx.core.http.HttpServer;
import io.vertx.core.json.JsonObject;
import java.io.IOException;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Runs one {@link io.distillery.stage.Stage} as a service: a consumer of {@code
 * distillery.jobs.<stage>} in the group {@code distillery-worker-<stage>} (so instances share the
 * work), a producer of job events, and a Vert.x HTTP endpoint with {@code /health} and Prometheus
 * {@code /metrics}. Several hosts can share one Vert.x instance (the one-process {@code distillery
 * up}).
 */
public final class WorkerHost implements AutoCloseable {

  private static final Logger LOG = LoggerFactory.getLogger(WorkerHost.class);

  private final StageDescriptor descriptor;
  private final WorkerConfig config;
  private final Vertx vertx;
  private final boolean ownsVertx;
  private final PrometheusMeterRegistry metrics =
      new PrometheusMeterRegistry(PrometheusConfig.DEFAULT);
  private final KafkaProducer<String, byte[]> producer;
  private final JobLoop loop;
  private final Thread thread;
  private HttpServer http;
  private volatile boolean closed;

  private WorkerHost(
      StageDescriptor descriptor, WorkerConfig config, Vertx vertx, boolean ownsVertx)
      throws IOException {
    this.descriptor = descriptor;
    this.config = config;
    this.vertx = vertx;
    this.ownsVertx = ownsVertx;
    KafkaSettings kafka = config.kafka();
    String jobsTopic = Topics.jobs(descriptor.name());
    try (TopicAdmin admin = new TopicAdmin(kafka)) {
      admin.ensurePlatformTopics();
      admin.ensure(List.of(jobsTopic, Topics.dlq(jobsTopic)), Map.of());
    }
    ArtefactStore store = new FileArtefactStore(config.storeRoot(), config.readRoots());
    Map<String, Object> pp = kafka.producer(config.workerId() + "-" + descriptor.name());
    pp.put("key.serializer", StringSerializer.class);
    pp.put("value.serializer", ByteArraySerializer.class);
    this.producer = new KafkaProducer<>(pp);
    Map<String, Object> cp =
        kafka.consumer(
            "distillery-worker-" + descriptor.name(), config.workerId() + "-" + descriptor.name());
    cp.put(ConsumerConfig.MAX_POLL_RECORDS_CONFIG, 1);
    cp.put(ConsumerConfig.FETCH_MAX_WAIT_MS_CONFIG, 50);
    cp.put(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG, 1000);
    cp.put(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG, 10000);
    KafkaConsumer<String, byte[]> consumer = new KafkaConsumer<>(cp);
    this.loop =
        new JobLoop(
            descriptor,
            config,
            consumer,
            producer,
            kafka.serde(StageJob.class),
            kafka.serde(JobEvent.class),
            new DeadLetters(
                producer, kafka.serde(DeadLetter.class), "distillery-worker-" + descriptor.name()),
            store,
            metrics);
    this.thread = new Thread(loop, "jobs-" + descriptor.name() + "-" + config.workerId());
  }

  /** Starts a host on its own Vert.x instance. */
  public static WorkerHost start(StageDescriptor descriptor, WorkerConfig config)
      throws IOException {
    return start(descriptor, config, Vertx.vertx(), true);
  }

  /** Starts a host on a shared Vert.x instance (which the caller closes). */
  public static WorkerHost start(StageDescriptor descriptor, WorkerConfig config, Vertx vertx)
      throws IOException {
    return start(descriptor, config, vertx, false);
  }

  private static WorkerHost start(
      StageDescriptor descriptor, WorkerConfig config, Vertx vertx, boolean owns)
      throws IOException {
    WorkerHost host = new WorkerHost(descriptor, config, vertx, owns);
    host.thread.start();
    if (config.httpPort() >= 0) {
      host.startHttp();
    }
    LOG.info(
        "stage={} worker={} started: topic={} {} memory_budget={}",
        descriptor.name(),
        config.workerId(),
        Topics.jobs(descriptor.name()),
        host.http == null ? "http=off" : "http=" + host.httpPort(),
        WorkerMemory.format(config.memoryBudgetBytes()));
    return host;
  }

  private void startHttp() {
    http =
        vertx
            .createHttpServer()
            .requestHandler(
                req -> {
                  switch (req.path()) {
                    case "/health" -> {
                      boolean up = thread.isAlive() && !closed;
                      req.response()
                          .setStatusCode(up ? 200 : 503)
                          .putHeader("content-type", "application/json")
                          .end(
                              new JsonObject()
                                  .put("status", up ? "UP" : "DOWN")
                                  .put("stage", descriptor.name())
                                  .put("worker", config.workerId())
                                  .put("job", loop.currentJob())
                                  .encode());
                    }
                    case "/metrics" ->
                        req.response()
                            .putHeader("content-type", "text/plain; version=0.0.4")
                            .end(metrics.scrape());
                    default ->
                        req.response().setStatusCode(404).end("not found: " + req.path() + "\n");
                  }
                });
    try {
      http.listen(config.httpPort(), config.httpHost())
          .toCompletionStage()
          .toCompletableFuture()
          .get(10, TimeUnit.SECONDS);
    } catch (Exception e) {
      throw new IllegalStateException("cannot open HTTP port " + config.httpPort() + ": " + e, e);
    }
  }

  public String stage() {
    return descriptor.name();
  }

  public int httpPort() {
    return http == null ? -1 : http.actualPort();
  }

  public String currentJob() {
    return loop.currentJob();
  }

  /**
   * Stops consuming; a running job gets the configured grace to finish, else it is abandoned and
   * redelivered.
   */
  @Override
  public void close() {
    close(config.shutdownGrace());
  }

  public void close(Duration grace) {
    if (closed) {
      return;
    }
    closed = true;
    loop.stop(grace);
    try {
      thread.join(grace.toMillis() + 15_000);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
    producer.close(Duration.ofSeconds(5));
    if (http != null) {
      http.close();
    }
    if (ownsVertx) {
      vertx.close();
    }
    metrics.close();
    LOG.info("stage={} worker={} stopped", descriptor.name(), config.workerId());
  }
}
