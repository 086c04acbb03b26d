package io.distillery.planner;

import static org.assertj.core.api.Assertions.assertThat;

import io.distillery.schemas.job.Completed;
import io.distillery.schemas.job.JobEvent;
import io.distillery.schemas.job.StageJob;
import io.distillery.schemas.job.Started;
import io.distillery.schemas.model.ModelRegistered;
import io.distillery.schemas.run.RunState;
import io.distillery.schemas.run.RunStatus;
import io.distillery.schemas.run.StageStatus;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.time.Duration;
import java.time.Instant;
import java.util.List;
import java.util.Map;
import org.apache.avro.io.DecoderFactory;
import org.apache.avro.io.EncoderFactory;
import org.apache.avro.specific.SpecificDatumReader;
import org.apache.avro.specific.SpecificDatumWriter;
import org.apache.avro.specific.SpecificRecord;
import org.apache.kafka.common.serialization.Serde;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.processor.api.MockProcessorContext;
import org.apache.kafka.streams.processor.api.Record;
import org.apache.kafka.streams.state.KeyValueStore;
import org.apache.kafka.streams.state.Stores;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * Admission in the Streams processor, on an in-memory run store: queued runs, their order, and a
 * restart.
 */
class PlannerProcessorTest {

  static final String TWO =
      """
      name: two
      stages:
        a: { stage: hash }
        b: { stage: transform, after: [a] }
      """;

  final RunPlanner planner = new RunPlanner(Duration.ofMillis(100), Duration.ofSeconds(1));
  MockProcessorContext<String, SpecificRecord> context;
  KeyValueStore<String, RunState> store;

  @BeforeEach
  void setUp() {
    context = new MockProcessorContext<>();
    store =
        Stores.keyValueStoreBuilder(
                Stores.inMemoryKeyValueStore(PlannerProcessor.STORE),
                Serdes.String(),
                runStateSerde())
            .withLoggingDisabled()
            .build();
    store.init(context.getStateStoreContext(), store);
    context.addStateStore(store);
  }

  PlannerProcessor processor(int maxWaitingJobs) {
    PlannerProcessor p =
        new PlannerProcessor(planner, s -> true, Duration.ofSeconds(1), maxWaitingJobs);
    p.init(context);
    return p;
  }

  @Test
  void shouldQueueNewRunsWhileJobsWaitAndStartThemInOrderAsWorkersPickUp() {
    PlannerProcessor p = processor(2);
    for (String id : List.of("r1", "r2", "r3", "r4")) {
      p.process(record(id, registration(id)));
    }
    assertThat(jobs())
        .extracting(j -> j.getRunId() + "/" + j.getNode())
        .containsExactly("r1/a", "r2/a");
    RunState r3 = store.get("r3");
    assertThat(r3.getStatus()).isEqualTo(RunStatus.RUNNING);
    assertThat(r3.getStages())
        .allSatisfy(s -> assertThat(s.getStatus()).isEqualTo(StageStatus.WAITING));
    assertThat(r3.getStages().getFirst().getMessage()).startsWith("queued");
    assertThat(RunPlanner.admitted(r3)).isFalse();

    context.resetForwards();
    p.process(record("r1", event("r1", "a", new Started())));
    assertThat(jobs()).extracting(j -> j.getRunId() + "/" + j.getNode()).containsExactly("r3/a");

    context.resetForwards();
    p.process(
        record(
            "r1",
            event(
                "r1",
                "a",
                Completed.newBuilder().setOutputs(List.of()).setMetrics(Map.of()).build())));
    // the next stage of a started run goes out although two jobs (r2/a, r3/a) already wait; r4
    // stays queued
    assertThat(jobs()).extracting(j -> j.getRunId() + "/" + j.getNode()).containsExactly("r1/b");
    assertThat(RunPlanner.admitted(store.get("r4"))).isFalse();

    context.resetForwards();
    p.process(record("r2", event("r2", "a", new Started())));
    assertThat(jobs()).isEmpty(); // r1/b and r3/a still wait: two
    p.process(record("r3", event("r3", "a", new Started())));
    assertThat(jobs()).extracting(j -> j.getRunId() + "/" + j.getNode()).containsExactly("r4/a");
  }

  @Test
  void shouldResumeTheQueueInRegistrationOrderWhenRestarted() {
    PlannerProcessor p = processor(1);
    p.process(record("r1", registration("r1")));
    p.process(record("r2", registration("r2")));
    p.process(record("r3", registration("r3")));
    assertThat(jobs()).extracting(StageJob::getRunId).containsExactly("r1");
    p.close();

    context.resetForwards();
    // restarted with a higher limit over the same store, as after a restore from the changelog: one
    // slot is free
    PlannerProcessor restarted = processor(2);
    // a registration that arrives first still queues behind r2 and r3, which take the free slot in
    // their order
    restarted.process(record("r4", registration("r4")));
    assertThat(jobs()).extracting(StageJob::getRunId).containsExactly("r2");
    restarted.process(record("r1", event("r1", "a", new Started())));
    assertThat(jobs()).extracting(StageJob::getRunId).containsExactly("r2", "r3");
    assertThat(RunPlanner.admitted(store.get("r4"))).isFalse();
  }

  @Test
  void shouldStartEveryRunWhenFewJobsWait() {
    PlannerProcessor p = processor(16);
    for (int i = 0; i < 5; i++) {
      p.process(record("r" + i, registration("r" + i)));
    }
    assertThat(jobs()).hasSize(5);
  }

  List<StageJob> jobs() {
    return context.forwarded().stream()
        .map(f -> f.record().value())
        .filter(StageJob.class::isInstance)
        .map(StageJob.class::cast)
        .toList();
  }

  static Record<String, SpecificRecord> record(String key, SpecificRecord value) {
    return new Record<>(key, value, 0L);
  }

  static ModelRegistered registration(String runId) {
    return ModelRegistered.newBuilder()
        .setRunId(runId)
        .setModelId("m")
        .setUri("file:///tmp/m")
        .setRecipe(TWO)
        .setRegisteredAt(Instant.EPOCH)
        .build();
  }

  JobEvent event(String runId, String node, Object payload) {
    int attempt =
        store.get(runId).getStages().stream()
            .filter(s -> s.getNode().equals(node))
            .findFirst()
            .orElseThrow()
            .getAttempt();
    return JobEvent.newBuilder()
        .setRunId(runId)
        .setJobId(runId + "/" + node)
        .setAttempt(attempt)
        .setStage(node.equals("a") ? "hash" : "transform")
        .setNode(node)
        .setWorker("w")
        .setTs(Instant.EPOCH)
        .setPayload(payload)
        .build();
  }

  /**
   * Plain Avro binary: the store needs a serde, and the registry's wire format is not what is under
   * test.
   */
  static Serde<RunState> runStateSerde() {
    return Serdes.serdeFrom(
        (topic, state) -> {
          try {
            ByteArrayOutputStream out = new ByteArrayOutputStream();
            var encoder = EncoderFactory.get().binaryEncoder(out, null);
            new SpecificDatumWriter<>(RunState.class).write(state, encoder);
            encoder.flush();
            return out.toByteArray();
          } catch (IOException e) {
            throw new UncheckedIOException(e);
          }
        },
        (topic, bytes) -> {
          try {
            return new SpecificDatumReader<>(RunState.class)
                .read(null, DecoderFactory.get().binaryDecoder(bytes, null));
          } catch (IOException e) {
            throw new UncheckedIOException(e);
          }
        });
  }
}
