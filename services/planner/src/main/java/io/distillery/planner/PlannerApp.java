package io.distillery.planner;

import io.distillery.runtime.config.Settings;
import io.distillery.runtime.kafka.DeadLetterHandler;
import io.distillery.runtime.kafka.KafkaSettings;
import io.distillery.runtime.kafka.StreamsLifecycle;
import io.distillery.runtime.kafka.TopicAdmin;
import io.distillery.runtime.kafka.Topics;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicInteger;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Runs the planner topology: {@code start}, {@code close}, and a {@code main} for its own process.
 */
public final class PlannerApp implements AutoCloseable {

  private static final Logger LOG = LoggerFactory.getLogger(PlannerApp.class);

  private final KafkaStreams streams;
  private final TopicAdmin admin;
  private final AtomicInteger replacedThreads = new AtomicInteger();

  private PlannerApp(PlannerConfig config) {
    KafkaSettings kafka = config.kafka();
    this.admin = new TopicAdmin(kafka);
    admin.ensurePlatformTopics();
    admin.ensure(
        List.of(Topics.dlq(Topics.MODELS_REGISTERED), Topics.dlq(Topics.JOB_EVENTS)), Map.of());
    int partitions = admin.partitionsOf(Topics.JOB_EVENTS);
    RunPlanner planner = new RunPlanner(config.retryBackoff(), config.maxRetryBackoff());
    var topology =
        PlannerTopology.build(
            kafka,
            planner,
            new StageCatalog(admin),
            config.tick(),
            partitions,
            config.maxWaitingJobs());

    Properties p = new Properties();
    p.putAll(kafka.streams());
    p.put(StreamsConfig.APPLICATION_ID_CONFIG, config.applicationId());
    p.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, config.bootstrap());
    p.put(StreamsConfig.STATE_DIR_CONFIG, config.stateDir().toAbsolutePath().toString());
    p.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, 100);
    p.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, config.threads());
    p.put(StreamsConfig.STATESTORE_CACHE_MAX_BYTES_CONFIG, 0);
    p.put(StreamsConfig.DESERIALIZATION_EXCEPTION_HANDLER_CLASS_CONFIG, DeadLetterHandler.class);
    p.put(DeadLetterHandler.REGISTRY_URL, config.registryUrl());
    p.put(DeadLetterHandler.CONSUMER_NAME, config.applicationId());
    p.put(StreamsConfig.producerPrefix(ProducerConfig.LINGER_MS_CONFIG), 0);
    p.put(StreamsConfig.consumerPrefix(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG), "earliest");
    p.put(StreamsConfig.POLL_MS_CONFIG, 20);
    this.streams = new KafkaStreams(topology, p);
    streams.setUncaughtExceptionHandler(
        e -> {
          replacedThreads.incrementAndGet();
          LOG.error("planner stream thread failed; replacing it", e);
          return StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse.REPLACE_THREAD;
        });
  }

  public static PlannerApp start(PlannerConfig config) {
    PlannerApp app = new PlannerApp(config);
    app.streams.start();
    LOG.info(
        "planner started: applicationId={} bootstrap={}",
        config.applicationId(),
        config.bootstrap());
    return app;
  }

  /** Blocks until the Streams app is RUNNING (all tasks assigned and restored). */
  public PlannerApp awaitRunning(Duration timeout) throws InterruptedException {
    StreamsLifecycle.awaitRunning(streams, timeout, "planner");
    return this;
  }

  /**
   * How many stream threads died of an exception and were replaced since start: 0 on a planner that
   * rode out its faults (a replaced thread reprocesses from the last commit, which at-least-once
   * makes safe but not free).
   */
  public int replacedThreads() {
    return replacedThreads.get();
  }

  public KafkaStreams.State state() {
    return streams.state();
  }

  @Override
  public void close() {
    StreamsLifecycle.closeLeavingGroup(streams);
    admin.close();
  }

  public static void main(String[] args) throws InterruptedException {
    Settings settings = new Settings("planner", System.getenv());
    PlannerConfig config = PlannerConfig.from(settings);
    LOG.info("planner config: {}", settings.describe());
    PlannerApp app = start(config);
    CountDownLatch done = new CountDownLatch(1);
    Runtime.getRuntime()
        .addShutdownHook(
            new Thread(
                () -> {
                  app.close();
                  done.countDown();
                },
                "planner-shutdown"));
    done.await();
  }
}
