package io.distillery.serving;

import io.distillery.runtime.config.Settings;
import io.distillery.runtime.kafka.KafkaSettings;
import io.distillery.runtime.kafka.TopicAdmin;
import io.distillery.runtime.kafka.Topics;
import io.distillery.serving.events.BufferedKafkaSink;
import io.distillery.serving.rollout.DeploymentFollower;
import io.vertx.core.Vertx;
import java.io.IOException;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CountDownLatch;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * A serving node as its own process: the HTTP node, its buffered event publisher and the follower
 * of {@code distillery.deployments}. {@link #start} is the seam tests and {@code distillery up}
 * use.
 */
public final class ServingMain implements AutoCloseable {

  private static final Logger LOG = LoggerFactory.getLogger(ServingMain.class);

  private final ServingNode node;
  private final DeploymentFollower follower;

  private ServingMain(ServingNode node, DeploymentFollower follower) {
    this.node = node;
    this.follower = follower;
  }

  /**
   * Starts a node connected to Kafka on {@code vertx} (a new instance, owned by the node, when
   * null).
   */
  public static ServingMain start(ServingConfig config, Vertx vertx) throws IOException {
    if (config.bootstrap() == null) {
      throw new IllegalArgumentException(
          "setting BOOTSTRAP is required for a node that follows deployments");
    }
    KafkaSettings kafka = KafkaSettings.of(config.bootstrap(), config.registryUrl());
    try (TopicAdmin admin = new TopicAdmin(kafka)) {
      admin.ensurePlatformTopics();
      admin.ensure(List.of(Topics.SERVING_TRAFFIC, Topics.dlq(Topics.DEPLOYMENTS)), Map.of());
    }
    BufferedKafkaSink sink =
        new BufferedKafkaSink(
            kafka, config.nodeId() + "-events", config.eventBuffer(), Duration.ofSeconds(2));
    ServingNode node =
        vertx == null ? ServingNode.start(config, sink) : ServingNode.start(config, vertx, sink);
    DeploymentFollower follower =
        new DeploymentFollower(kafka, config.nodeId(), config::hosts, node::apply);
    return new ServingMain(node, follower.start());
  }

  public ServingNode node() {
    return node;
  }

  /** Whether the deployments topic has been replayed and the current stable artefacts restored. */
  public boolean restored() {
    return follower.restored();
  }

  @Override
  public void close() {
    follower.close();
    node.close();
  }

  public static void main(String[] args) throws Exception {
    Settings settings = new Settings("serving", System.getenv());
    ServingConfig config = ServingConfig.from(settings);
    LOG.info("serving config: {}", settings.describe());
    ServingMain app = start(config, null);
    CountDownLatch done = new CountDownLatch(1);
    Runtime.getRuntime()
        .addShutdownHook(
            new Thread(
                () -> {
                  app.close();
                  done.countDown();
                },
                "serving-shutdown"));
    done.await();
  }
}
