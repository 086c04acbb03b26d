package io.distillery.serving.rollout;

import io.distillery.runtime.kafka.DeadLetters;
import io.distillery.runtime.kafka.KafkaSettings;
import io.distillery.runtime.kafka.Topics;
import io.distillery.runtime.serde.AvroSerde;
import io.distillery.schemas.common.ArtefactRef;
import io.distillery.schemas.deployment.DeploymentEvent;
import io.distillery.schemas.deployment.DeploymentRequested;
import io.distillery.schemas.deployment.RolledBack;
import io.distillery.schemas.dlq.DeadLetter;
import java.time.Duration;
import java.time.Instant;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.Predicate;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.TimeoutException;
import org.apache.kafka.common.errors.WakeupException;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Follows {@code distillery.deployments} for a serving node on its own thread, so that loading a
 * model never runs on the request path. Every start reads the topic from the beginning (assigned
 * partitions, no committed offsets): the records up to the end offsets at start are replayed into
 * the current stable artefact and teacher of each hosted deployment (the last DeploymentRequested
 * with canaryPercent 100, or the artefact a later RolledBack restored), which is then loaded once;
 * every later record is applied as it comes. An undecodable record goes to the dead-letter topic;
 * an artefact that fails to load is logged and leaves the node serving what it served.
 */
public final class DeploymentFollower implements AutoCloseable {

  private static final Logger LOG = LoggerFactory.getLogger(DeploymentFollower.class);

  /** What the follower drives: the node's {@code apply}. */
  @FunctionalInterface
  public interface Target {
    void apply(DeploymentEvent event) throws Exception;
  }

  private final KafkaConsumer<String, byte[]> consumer;
  private final KafkaProducer<String, byte[]> dlqProducer;
  private final DeadLetters deadLetters;
  private final AvroSerde<DeploymentEvent> serde;
  private final Predicate<String> hosts;
  private final Target target;
  private final Thread thread;
  private volatile boolean running = true;
  private volatile boolean restored;

  public DeploymentFollower(
      KafkaSettings kafka, String nodeId, Predicate<String> hosts, Target target) {
    this.consumer = new KafkaConsumer<>(kafka.consumer(null, nodeId + "-deployments"));
    Map<String, Object> pp = kafka.producer(nodeId + "-deployments-dlq");
    pp.put("key.serializer", StringSerializer.class);
    pp.put("value.serializer", ByteArraySerializer.class);
    this.dlqProducer = new KafkaProducer<>(pp);
    this.deadLetters =
        new DeadLetters(dlqProducer, kafka.serde(DeadLetter.class), "serving-" + nodeId);
    this.serde = kafka.serde(DeploymentEvent.class);
    this.hosts = hosts;
    this.target = target;
    this.thread = new Thread(this::run, "serving-deployments-" + nodeId);
    thread.setDaemon(true);
  }

  public DeploymentFollower start() {
    thread.start();
    return this;
  }

  /** Whether the replay of the topic up to the start has been applied. */
  public boolean restored() {
    return restored;
  }

  private void run() {
    try {
      List<TopicPartition> parts = partitions();
      if (parts.isEmpty()) {
        return;
      }
      consumer.assign(parts);
      consumer.seekToBeginning(parts);
      Map<TopicPartition, Long> end = new HashMap<>(consumer.endOffsets(parts));
      Map<String, DeploymentEvent> stable = new LinkedHashMap<>();
      while (running && !replayed(end)) {
        for (ConsumerRecord<String, byte[]> r : consumer.poll(Duration.ofMillis(100))) {
          TopicPartition tp = new TopicPartition(r.topic(), r.partition());
          if (r.offset() < end.getOrDefault(tp, 0L)) {
            DeploymentEvent e = decode(r);
            if (e != null && hosts.test(e.getDeploymentId())) {
              replay(stable, e);
            }
          } else {
            apply(r);
          }
        }
      }
      for (DeploymentEvent e : stable.values()) {
        LOG.info(
            "restoring deployment={} artefact={}",
            e.getDeploymentId(),
            ((DeploymentRequested) e.getPayload()).getArtefact().getSha256());
        applyLogged(e);
      }
      restored = true;
      while (running) {
        for (ConsumerRecord<String, byte[]> r : consumer.poll(Duration.ofMillis(100))) {
          apply(r);
        }
      }
    } catch (WakeupException e) {
      // closing
    } catch (RuntimeException e) {
      LOG.error("deployment follower stopped; this node no longer follows rollouts", e);
    } finally {
      consumer.close(Duration.ofSeconds(2));
    }
  }

  /**
   * The deployments topic's partitions, retried while the broker is unreachable (the node serves
   * meanwhile).
   */
  private List<TopicPartition> partitions() {
    while (running) {
      try {
        List<TopicPartition> parts =
            consumer.partitionsFor(Topics.DEPLOYMENTS, Duration.ofSeconds(10)).stream()
                .map(p -> new TopicPartition(p.topic(), p.partition()))
                .toList();
        if (!parts.isEmpty()) {
          return parts;
        }
        LOG.warn("topic {} has no partitions yet; retrying", Topics.DEPLOYMENTS);
      } catch (TimeoutException e) {
        LOG.warn(
            "cannot reach the broker for {}; retrying error={}", Topics.DEPLOYMENTS, e.toString());
      }
      try {
        Thread.sleep(1000);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        return List.of();
      }
    }
    return List.of();
  }

  private boolean replayed(Map<TopicPartition, Long> end) {
    for (Map.Entry<TopicPartition, Long> e : end.entrySet()) {
      if (consumer.position(e.getKey()) < e.getValue()) {
        return false;
      }
    }
    return true;
  }

  /**
   * Folds one replayed event into the stable artefact per deployment (protocol.md, "current stable
   * package").
   */
  static void replay(Map<String, DeploymentEvent> stable, DeploymentEvent e) {
    String id = e.getDeploymentId();
    switch (e.getPayload()) {
      case DeploymentRequested req when req.getCanaryPercent() == 100 -> stable.put(id, e);
      case RolledBack rb when rb.getRestored() != null -> {
        DeploymentEvent last = stable.get(id);
        ArtefactRef teacher =
            last == null ? null : ((DeploymentRequested) last.getPayload()).getTeacher();
        Map<String, String> labels =
            last == null ? Map.of() : ((DeploymentRequested) last.getPayload()).getLabels();
        stable.put(
            id,
            DeploymentEvent.newBuilder()
                .setDeploymentId(id)
                .setRunId(e.getRunId())
                .setTs(Instant.now())
                .setPayload(
                    DeploymentRequested.newBuilder()
                        .setArtefact(rb.getRestored())
                        .setTarget("local")
                        .setCanaryPercent(100)
                        .setPrevious(null)
                        .setTeacher(teacher)
                        .setLabels(labels)
                        .build())
                .build());
      }
      default -> {}
    }
  }

  private void apply(ConsumerRecord<String, byte[]> r) {
    DeploymentEvent e = decode(r);
    if (e != null && hosts.test(e.getDeploymentId())) {
      applyLogged(e);
    }
  }

  private void applyLogged(DeploymentEvent e) {
    applyLogged(target, e);
  }

  /** Applies {@code e}; a failure is logged and returns false, so the follower keeps following. */
  static boolean applyLogged(Target target, DeploymentEvent e) {
    try {
      target.apply(e);
      return true;
    } catch (Exception | OutOfMemoryError ex) {
      // an OutOfMemoryError here is a model that does not fit (DJL's direct buffers or the heap
      // while it loads): what was allocated for it is garbage now, and the node keeps serving and
      // following what it has instead of losing this thread for good
      LOG.error(
          "deployment event not applied deployment={} runId={} payload={} error={}",
          e.getDeploymentId(),
          e.getRunId(),
          e.getPayload().getClass().getSimpleName(),
          ex.toString(),
          ex);
      return false;
    }
  }

  private DeploymentEvent decode(ConsumerRecord<String, byte[]> r) {
    try {
      return serde.deserialize(r.topic(), r.value());
    } catch (RuntimeException e) {
      LOG.warn(
          "undecodable deployment event topic={} partition={} offset={} error={}",
          r.topic(),
          r.partition(),
          r.offset(),
          e.toString());
      try {
        deadLetters.send(r.topic(), r.partition(), r.offset(), r.key(), r.value(), e);
      } catch (RuntimeException dlqFailure) {
        LOG.error(
            "dead letter not written topic={} offset={} error={}",
            r.topic(),
            r.offset(),
            dlqFailure.toString());
      }
      return null;
    }
  }

  @Override
  public void close() {
    running = false;
    consumer.wakeup();
    try {
      thread.join(10_000);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
    dlqProducer.close(Duration.ofSeconds(2));
  }
}
