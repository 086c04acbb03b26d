package io.distillery.deployer.rollout;

import io.distillery.runtime.kafka.KafkaSettings;
import io.distillery.runtime.kafka.TopicAdmin;
import io.distillery.runtime.kafka.Topics;
import io.distillery.runtime.serde.AvroSerde;
import io.distillery.runtime.serde.SchemaRegistryException;
import io.distillery.schemas.deployment.DeploymentEvent;
import io.distillery.schemas.misfire.Misfire;
import io.distillery.schemas.serving.ServingTraffic;
import io.distillery.stage.StageException;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import org.apache.kafka.clients.consumer.CloseOptions;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.KafkaException;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.InterruptException;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * {@link DeploymentChannel} on the real topics: a producer for {@code distillery.deployments}, and
 * one consumer, in no group, assigned to every partition of the deployments, traffic and misfire
 * topics. At opening the deployments topic is read from its beginning (the history, up to the end
 * offsets of that moment) and the traffic and misfire topics are pinned at their ends, so that
 * {@link #poll} returns exactly what was written after the opening. Records of other deployments
 * are skipped; a record that cannot be decoded is logged and skipped (its owner's consumers
 * dead-letter it).
 */
public final class KafkaDeploymentChannel implements DeploymentChannel {

  private static final Logger LOG = LoggerFactory.getLogger(KafkaDeploymentChannel.class);
  private static final Duration SEND_TIMEOUT = Duration.ofSeconds(30);
  private static final Duration HISTORY_TIMEOUT = Duration.ofSeconds(60);

  private final String deploymentId;
  private final KafkaProducer<String, byte[]> producer;
  private final KafkaConsumer<String, byte[]> consumer;
  private final AvroSerde<DeploymentEvent> deployments;
  private final AvroSerde<ServingTraffic> traffic;
  private final AvroSerde<Misfire> misfires;
  private final Map<TopicPartition, Long> historyEnd;
  private final List<Observation> pending = new ArrayList<>();

  public KafkaDeploymentChannel(KafkaSettings kafka, String deploymentId, String clientId) {
    this.deploymentId = deploymentId;
    try (TopicAdmin admin = new TopicAdmin(kafka)) {
      admin.ensurePlatformTopics();
      admin.ensure(List.of(Topics.SERVING_TRAFFIC), Map.of());
    }
    this.deployments = kafka.serde(DeploymentEvent.class);
    this.traffic = kafka.serde(ServingTraffic.class);
    this.misfires = kafka.serde(Misfire.class);
    Map<String, Object> pp = kafka.producer(clientId);
    pp.put("value.serializer", ByteArraySerializer.class);
    this.producer = new KafkaProducer<>(pp);
    this.consumer = new KafkaConsumer<>(kafka.consumer(null, clientId));
    try {
      List<TopicPartition> history = partitions(Topics.DEPLOYMENTS);
      List<TopicPartition> live = new ArrayList<>(partitions(Topics.SERVING_TRAFFIC));
      live.addAll(partitions(Topics.MISFIRES));
      List<TopicPartition> all = new ArrayList<>(history);
      all.addAll(live);
      consumer.assign(all);
      consumer.seekToBeginning(history);
      consumer.seekToEnd(live);
      live.forEach(consumer::position); // seekToEnd is lazy: pin "now" before anything is requested
      this.historyEnd = new HashMap<>(consumer.endOffsets(history));
    } catch (RuntimeException e) {
      close();
      throw e;
    }
  }

  private List<TopicPartition> partitions(String topic) {
    return consumer.partitionsFor(topic).stream()
        .map(p -> new TopicPartition(topic, p.partition()))
        .toList();
  }

  @Override
  public List<DeploymentEvent> history() throws StageException, InterruptedException {
    List<DeploymentEvent> events = new ArrayList<>();
    long deadline = System.nanoTime() + HISTORY_TIMEOUT.toNanos();
    while (!historyRead()) {
      if (System.nanoTime() > deadline) {
        throw StageException.retryable(
            "cannot read the history of "
                + Topics.DEPLOYMENTS
                + " within "
                + HISTORY_TIMEOUT.toSeconds()
                + "s",
            null);
      }
      for (ConsumerRecord<String, byte[]> r : pollRecords(Duration.ofMillis(200))) {
        Observation o = decode(r);
        if (o == null) {
          continue;
        }
        Long end = historyEnd.get(new TopicPartition(r.topic(), r.partition()));
        if (o instanceof Observation.Deployment(DeploymentEvent e)
            && end != null
            && r.offset() < end) {
          events.add(e);
        } else {
          pending.add(o); // written after the opening: for poll()
        }
      }
    }
    return events;
  }

  private boolean historyRead() {
    for (Map.Entry<TopicPartition, Long> e : historyEnd.entrySet()) {
      if (consumer.position(e.getKey()) < e.getValue()) {
        return false;
      }
    }
    return true;
  }

  @Override
  public void publish(DeploymentEvent event) throws StageException, InterruptedException {
    try {
      producer
          .send(
              new ProducerRecord<>(
                  Topics.DEPLOYMENTS,
                  event.getDeploymentId(),
                  deployments.serialize(Topics.DEPLOYMENTS, event)))
          .get(SEND_TIMEOUT.toSeconds(), TimeUnit.SECONDS);
    } catch (ExecutionException | TimeoutException | KafkaException e) {
      throw StageException.retryable(
          "cannot write to " + Topics.DEPLOYMENTS + " for deployment " + deploymentId + ": " + e,
          e);
    }
  }

  @Override
  public List<Observation> poll(Duration timeout) throws StageException, InterruptedException {
    if (!pending.isEmpty()) {
      List<Observation> out = List.copyOf(pending);
      pending.clear();
      return out;
    }
    List<Observation> out = new ArrayList<>();
    for (ConsumerRecord<String, byte[]> r : pollRecords(timeout)) {
      Observation o = decode(r);
      if (o != null) {
        out.add(o);
      }
    }
    return out;
  }

  private Iterable<ConsumerRecord<String, byte[]>> pollRecords(Duration timeout)
      throws StageException, InterruptedException {
    try {
      return consumer.poll(timeout);
    } catch (InterruptException e) {
      throw new InterruptedException("interrupted while watching deployment " + deploymentId);
    } catch (KafkaException e) {
      throw StageException.retryable(
          "cannot read the deployment topics for " + deploymentId + ": " + e, e);
    }
  }

  /**
   * The record as an observation of this deployment, or null (another deployment, or undecodable).
   */
  private Observation decode(ConsumerRecord<String, byte[]> r) throws StageException {
    if (r.value() == null || (r.key() != null && !r.key().equals(deploymentId))) {
      return null;
    }
    try {
      return switch (r.topic()) {
        case Topics.DEPLOYMENTS -> {
          DeploymentEvent e = deployments.deserialize(r.topic(), r.value());
          yield e.getDeploymentId().equals(deploymentId) ? new Observation.Deployment(e) : null;
        }
        case Topics.SERVING_TRAFFIC -> {
          ServingTraffic t = traffic.deserialize(r.topic(), r.value());
          yield t.getDeploymentId().equals(deploymentId) ? new Observation.Traffic(t) : null;
        }
        case Topics.MISFIRES -> {
          Misfire m = misfires.deserialize(r.topic(), r.value());
          yield m.getDeploymentId().equals(deploymentId) ? new Observation.Misfired(m) : null;
        }
        default -> null;
      };
    } catch (RuntimeException e) {
      if (e.getCause() instanceof SchemaRegistryException sre
          && (sre.httpStatus() == 0 || sre.httpStatus() >= 500)) {
        // the registry is down, the record may be fine: the job is tried again rather than the
        // record skipped
        throw StageException.retryable(
            "cannot decode "
                + r.topic()
                + " for deployment "
                + deploymentId
                + ": the schema registry is unavailable: "
                + sre.getMessage(),
            e);
      }
      LOG.warn(
          "deployment={} skipped undecodable record topic={} offset={}:{}: {}",
          deploymentId,
          r.topic(),
          r.partition(),
          r.offset(),
          e.toString());
      return null;
    }
  }

  @Override
  public void close() {
    try {
      consumer.close(CloseOptions.timeout(Duration.ofSeconds(5)));
    } finally {
      producer.close(Duration.ofSeconds(5));
    }
  }
}
