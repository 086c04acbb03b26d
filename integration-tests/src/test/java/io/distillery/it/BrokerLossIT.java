package io.distillery.it;

import static org.assertj.core.api.Assertions.assertThat;

import io.distillery.planner.PlannerApp;
import io.distillery.planner.PlannerConfig;
import io.distillery.runtime.kafka.KafkaSettings;
import io.distillery.runtime.kafka.TopicAdmin;
import io.distillery.runtime.kafka.TopicReplication;
import io.distillery.runtime.kafka.Topics;
import io.distillery.runtime.serde.AvroSerde;
import io.distillery.runtime.worker.WorkerConfig;
import io.distillery.runtime.worker.WorkerHost;
import io.distillery.schemas.job.Completed;
import io.distillery.schemas.job.JobEvent;
import io.distillery.schemas.run.RunState;
import io.distillery.schemas.run.RunStatus;
import io.distillery.schemas.run.StageStatus;
import io.distillery.stack.KafkaCluster;
import io.distillery.stage.StageRegistry;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.stream.Collectors;
import org.apache.kafka.clients.admin.ConfigEntry;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.utils.Utils;
import org.junit.jupiter.api.Test;

/**
 * A three-broker cluster (replication 3, min in-sync 2) loses, in the middle of a run, the broker
 * that leads the partition the run's job events go to: producers (acks=all, idempotent) and
 * consumers move to the new leaders, and the run completes with exactly one Completed per stage,
 * every record of it readable, and the right result.
 */
class BrokerLossIT {

  static final String RECIPE =
      """
      name: broker-loss
      timeout: 60s
      stages:
        a: { stage: hash }
        slow: { stage: slow-hash, after: [a], params: { steps: 40, pauseMs: 200 } }
        c: { stage: transform, after: [slow], params: { mode: upper } }
      """;

  @Test
  void shouldCompleteTheRunWithOneCompletedPerStageWhenABrokerIsLostMidRun() throws Exception {
    TopicReplication replication = new TopicReplication(3, 2);
    try (KafkaCluster brokers = KafkaCluster.start(3, 2)) {
      KafkaSettings kafka =
          KafkaSettings.of(brokers.bootstrapServers(), Cluster.registry(), replication);
      List<AutoCloseable> services = new ArrayList<>();
      try {
        PlannerApp planner =
            PlannerApp.start(
                    PlannerConfig.of(
                            kafka.bootstrapServers(),
                            kafka.registryUrl(),
                            Cluster.newDir("planner"))
                        .withBackoff(Duration.ofMillis(200), Duration.ofSeconds(2))
                        .withReplication(replication))
                .awaitRunning(Duration.ofSeconds(90));
        services.add(planner);
        for (String stage : List.of("hash", "slow-hash", "transform")) {
          WorkerConfig config =
              WorkerConfig.of(kafka.bootstrapServers(), kafka.registryUrl(), Cluster.store())
                  .withWorkerId("broker-loss")
                  .withTiming(Duration.ofMillis(500), Duration.ofSeconds(5))
                  .withHttpPort(-1)
                  .withReplication(replication);
          services.add(WorkerHost.start(StageRegistry.discover().get(stage), config));
        }
        assertReplicated(kafka, List.of(Topics.JOB_EVENTS, Topics.RUNS, Topics.jobs("slow-hash")));

        String text = "lose a broker";
        Cluster.Cli registered =
            Cluster.cli(
                kafka,
                "register",
                "--model",
                Cluster.model(text).toString(),
                "--recipe",
                Cluster.recipe(RECIPE).toString());
        assertThat(registered.code()).as(registered.err()).isZero();
        String runId = registered.out().trim();
        RunState mid =
            Cluster.awaitRun(
                kafka,
                runId,
                r ->
                    r.getStatus() != RunStatus.RUNNING
                        || WorkerKillIT.stage(r, "slow").getPercent() >= 20,
                Duration.ofSeconds(60));
        assertThat(mid.getStatus())
            .as(String.valueOf(mid.getReason()))
            .isEqualTo(RunStatus.RUNNING);

        int victim = leaderOfRunEvents(kafka, runId);
        brokers.stopNode(victim);

        RunState done =
            Cluster.awaitRun(
                kafka, runId, r -> r.getStatus() != RunStatus.RUNNING, Duration.ofSeconds(90));
        assertThat(done.getStatus())
            .as(String.valueOf(done.getReason()))
            .isEqualTo(RunStatus.SUCCEEDED);
        assertThat(done.getStages())
            .allSatisfy(
                s -> {
                  assertThat(s.getStatus()).isEqualTo(StageStatus.COMPLETED);
                  assertThat(s.getCompletions()).as(s.getNode()).isEqualTo(1);
                });
        assertThat(leaderOfRunEvents(kafka, runId))
            .as("the partition moved to a live broker")
            .isNotEqualTo(victim);
        assertThat(planner.replacedThreads())
            .as("planner stream threads that died and were replaced")
            .isZero();

        List<JobEvent> events = jobEvents(kafka, runId);
        Map<String, Long> completed =
            events.stream()
                .filter(e -> e.getPayload() instanceof Completed)
                .collect(Collectors.groupingBy(JobEvent::getNode, Collectors.counting()));
        assertThat(completed)
            .as("Completed events per node on %s", Topics.JOB_EVENTS)
            .containsExactlyInAnyOrderEntriesOf(Map.of("a", 1L, "slow", 1L, "c", 1L));
        assertThat(
                events.stream()
                    .filter(e -> e.getNode().equals("slow"))
                    .map(e -> e.getAttempt())
                    .distinct())
            .as("the slow stage ran once, not retried")
            .containsExactly(1);

        // nothing lost: each stage's output is what it computes from its predecessor's, from the
        // model's text on
        String digest = slowHash(text, 40);
        assertThat(Files.readString(outputText(done, "slow"))).isEqualTo(digest);
        assertThat(Files.readString(outputText(done, "c")))
            .isEqualTo(digest.toUpperCase(Locale.ROOT));
      } finally {
        for (AutoCloseable s : services.reversed()) {
          s.close();
        }
      }
    }
  }

  /** Every topic the services made has 3 replicas and min.insync.replicas 2. */
  static void assertReplicated(KafkaSettings kafka, List<String> topics) throws Exception {
    try (TopicAdmin admin = new TopicAdmin(kafka)) {
      Map<String, TopicDescription> described =
          admin.admin().describeTopics(topics).allTopicNames().get(30, TimeUnit.SECONDS);
      assertThat(described.values())
          .allSatisfy(
              d ->
                  assertThat(d.partitions())
                      .allSatisfy(p -> assertThat(p.replicas()).as(d.name()).hasSize(3)));
      List<ConfigResource> resources =
          topics.stream().map(t -> new ConfigResource(ConfigResource.Type.TOPIC, t)).toList();
      admin
          .admin()
          .describeConfigs(resources)
          .all()
          .get(30, TimeUnit.SECONDS)
          .forEach(
              (r, config) -> {
                ConfigEntry minIsr = config.get("min.insync.replicas");
                assertThat(minIsr.value()).as(r.name()).isEqualTo("2");
              });
    }
  }

  /**
   * The broker leading the partition of {@value Topics#JOB_EVENTS} that the run's events (keyed by
   * runId) go to.
   */
  static int leaderOfRunEvents(KafkaSettings kafka, String runId) throws Exception {
    try (TopicAdmin admin = new TopicAdmin(kafka)) {
      TopicDescription d =
          admin
              .admin()
              .describeTopics(List.of(Topics.JOB_EVENTS))
              .allTopicNames()
              .get(30, TimeUnit.SECONDS)
              .get(Topics.JOB_EVENTS);
      int partition =
          Utils.toPositive(Utils.murmur2(runId.getBytes(StandardCharsets.UTF_8)))
              % d.partitions().size();
      return d.partitions().get(partition).leader().id();
    }
  }

  /**
   * Every job event of the run on {@value Topics#JOB_EVENTS}, read from the beginning to the end.
   */
  static List<JobEvent> jobEvents(KafkaSettings kafka, String runId) {
    AvroSerde<JobEvent> serde = kafka.serde(JobEvent.class);
    List<JobEvent> events = new ArrayList<>();
    try (KafkaConsumer<String, byte[]> c = new KafkaConsumer<>(kafka.consumer(null, "it-events"))) {
      List<TopicPartition> parts =
          c.partitionsFor(Topics.JOB_EVENTS).stream()
              .map(p -> new TopicPartition(p.topic(), p.partition()))
              .toList();
      c.assign(parts);
      c.seekToBeginning(parts);
      Map<TopicPartition, Long> end = c.endOffsets(parts);
      long deadline = System.nanoTime() + Duration.ofSeconds(30).toNanos();
      while (parts.stream().anyMatch(p -> c.position(p) < end.get(p))) {
        assertThat(System.nanoTime())
            .as("read %s to its end", Topics.JOB_EVENTS)
            .isLessThan(deadline);
        for (ConsumerRecord<String, byte[]> r : c.poll(Duration.ofMillis(200))) {
          if (runId.equals(r.key())) {
            events.add(serde.deserialize(r.topic(), r.value()));
          }
        }
      }
    }
    return events;
  }

  /**
   * What {@code SlowHashStage} computes from one input text: sha256 of the text, then 1000 more per
   * step.
   */
  static String slowHash(String text, int steps) throws Exception {
    MessageDigest md = MessageDigest.getInstance("SHA-256");
    byte[] state = md.digest(text.getBytes(StandardCharsets.ISO_8859_1));
    for (int i = 0; i < steps * 1000; i++) {
      state = md.digest(state);
    }
    return HexFormat.of().formatHex(state);
  }

  /** The text file of a node's first output in the shared artefact store. */
  static Path outputText(RunState run, String node) throws Exception {
    var ref = WorkerKillIT.stage(run, node).getOutputs().getFirst();
    Path p =
        new io.distillery.runtime.artefact.FileArtefactStore(Cluster.store(), List.of())
            .resolve(ref);
    return Files.isDirectory(p) ? p.resolve("text.txt") : p;
  }
}
