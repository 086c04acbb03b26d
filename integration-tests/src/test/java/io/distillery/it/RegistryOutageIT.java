package io.distillery.it;

import static org.assertj.core.api.Assertions.assertThat;

import io.distillery.planner.PlannerApp;
import io.distillery.planner.PlannerConfig;
import io.distillery.runtime.kafka.KafkaSettings;
import io.distillery.runtime.kafka.TopicAdmin;
import io.distillery.runtime.kafka.Topics;
import io.distillery.runtime.worker.WorkerConfig;
import io.distillery.runtime.worker.WorkerHost;
import io.distillery.schemas.job.Completed;
import io.distillery.schemas.job.JobEvent;
import io.distillery.schemas.run.RunState;
import io.distillery.schemas.run.RunStatus;
import io.distillery.schemas.run.StageStatus;
import io.distillery.stack.EmbeddedKafka;
import io.distillery.stack.SchemaRegistryProcess;
import io.distillery.stage.StageRegistry;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.stream.Collectors;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.common.TopicPartition;
import org.junit.jupiter.api.Test;

/**
 * The schema registry is stopped for 30 s in the middle of a run and started again on the same port
 * with the same storage. While it is away, the slow stage completes (its worker and the planner
 * have the schemas they need cached), then the planner must dispatch {@code m} to a topic it never
 * wrote before (its producer needs the registry to register the subject: it backs off), and a
 * worker started during the outage is handed a job whose schema it does not know yet (its consumer
 * backs off). When the registry is back both resume: the run succeeds with one Completed per stage,
 * each attempt 1, and nothing in any dead-letter topic.
 *
 * <p>Its own broker and registry, not the shared ones: the records of other tests carry the shared
 * registry's ids.
 */
class RegistryOutageIT {

  static final Duration OUTAGE = Duration.ofSeconds(30);

  static final String RECIPE =
      """
      name: registry-outage
      timeout: 150s
      stages:
        a: { stage: hash }
        t: { stage: transform, after: [a], params: { mode: upper } }
        slow: { stage: slow-hash, after: [a], params: { steps: 40, pauseMs: 250 } }
        m: { stage: merge, after: [slow] }
      """;

  @Test
  void shouldResumeAndCompleteWithNothingDeadLetteredWhenTheRegistryIsDownForThirtySeconds()
      throws Exception {
    Path dir = Cluster.newDir("registry-outage");
    Path app = SchemaRegistryProcess.locateApp();
    SchemaRegistryProcess registry =
        SchemaRegistryProcess.start(app, dir.resolve("logs"), dir.resolve("registry"));
    try (EmbeddedKafka broker = EmbeddedKafka.start()) {
      List<AutoCloseable> services =
          new ArrayList<>(); // closed before the broker: they leave their groups
      try {
        KafkaSettings kafka = KafkaSettings.of(broker.bootstrapServers(), registry.url());
        try (TopicAdmin admin = new TopicAdmin(kafka)) {
          admin.ensurePlatformTopics();
          // transform's workers are scaled to zero (as KEDA does) until the outage: its topic is
          // there, no worker yet
          String transformJobs = Topics.jobs("transform");
          admin.ensure(List.of(transformJobs, Topics.dlq(transformJobs)), Map.of());
        }
        PlannerApp planner =
            PlannerApp.start(
                    PlannerConfig.of(
                            kafka.bootstrapServers(), kafka.registryUrl(), dir.resolve("planner"))
                        .withBackoff(Duration.ofMillis(200), Duration.ofSeconds(2)))
                .awaitRunning(Duration.ofSeconds(90));
        services.add(planner);
        for (String stage : List.of("hash", "slow-hash", "merge")) {
          services.add(worker(kafka, stage));
        }

        String text = "registry outage";
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
        assertThat(WorkerKillIT.stage(mid, "t").getStatus())
            .as("t waits for a transform worker")
            .isEqualTo(StageStatus.DISPATCHED);

        int port = registry.port();
        registry.close();
        long outageStart = System.nanoTime();
        services.add(
            worker(
                kafka,
                "transform")); // its first job's schema is unknown to it and the registry is away
        Thread.sleep(
            Math.max(
                0,
                OUTAGE.toMillis()
                    - TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - outageStart)));
        long backMillis = System.currentTimeMillis();
        registry =
            SchemaRegistryProcess.start(app, dir.resolve("logs"), dir.resolve("registry"), port);

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
                  assertThat(s.getAttempt()).as("%s was not retried", s.getNode()).isEqualTo(1);
                });
        List<JobEvent> events = BrokerLossIT.jobEvents(kafka, runId);
        Map<String, Long> completed =
            events.stream()
                .filter(e -> e.getPayload() instanceof Completed)
                .collect(Collectors.groupingBy(JobEvent::getNode, Collectors.counting()));
        assertThat(completed)
            .containsExactlyInAnyOrderEntriesOf(Map.of("a", 1L, "t", 1L, "slow", 1L, "m", 1L));
        assertThat(events)
            .filteredOn(e -> e.getNode().equals("slow") && e.getPayload() instanceof Completed)
            .singleElement()
            .as("slow completed while the registry was away")
            .satisfies(e -> assertThat(e.getTs().toEpochMilli()).isLessThan(backMillis));
        assertThat(deadLetters(kafka)).as("records on distillery.dlq.* topics").isEmpty();
        assertThat(planner.replacedThreads())
            .as("planner stream threads that died and were replaced")
            .isZero();

        String upper = text.toUpperCase(Locale.ROOT);
        assertThat(Files.readString(BrokerLossIT.outputText(done, "t"))).isEqualTo(upper);
        assertThat(Files.readString(BrokerLossIT.outputText(done, "m")))
            .isEqualTo("slow=" + BrokerLossIT.slowHash(text, 40) + "\n");
      } finally {
        for (AutoCloseable s : services.reversed()) {
          s.close();
        }
      }
    } finally {
      registry.close();
    }
  }

  static WorkerHost worker(KafkaSettings kafka, String stage) throws Exception {
    WorkerConfig config =
        WorkerConfig.of(kafka.bootstrapServers(), kafka.registryUrl(), Cluster.store())
            .withWorkerId("outage")
            .withTiming(Duration.ofMillis(500), Duration.ofSeconds(5))
            .withHttpPort(-1);
    return WorkerHost.start(StageRegistry.discover().get(stage), config);
  }

  /** Record counts of every non-empty {@code distillery.dlq.*} topic. */
  static Map<String, Long> deadLetters(KafkaSettings kafka) throws Exception {
    try (TopicAdmin admin = new TopicAdmin(kafka)) {
      List<String> dlqs =
          admin.list().stream().filter(t -> t.startsWith("distillery.dlq.")).toList();
      assertThat(dlqs).as("the services declare their dead-letter topics").isNotEmpty();
      Map<TopicPartition, OffsetSpec> ends = new java.util.HashMap<>();
      admin
          .admin()
          .describeTopics(dlqs)
          .allTopicNames()
          .get(30, TimeUnit.SECONDS)
          .forEach(
              (name, d) ->
                  d.partitions()
                      .forEach(
                          p ->
                              ends.put(
                                  new TopicPartition(name, p.partition()), OffsetSpec.latest())));
      return admin.admin().listOffsets(ends).all().get(30, TimeUnit.SECONDS).entrySet().stream()
          .filter(e -> e.getValue().offset() > 0)
          .collect(
              Collectors.groupingBy(
                  e -> e.getKey().topic(), Collectors.summingLong(e -> e.getValue().offset())));
    }
  }
}
