package io.distillery.planner;

import io.distillery.runtime.kafka.KafkaSettings;
import io.distillery.runtime.kafka.Topics;
import io.distillery.runtime.serde.AvroSerde;
import io.distillery.schemas.job.JobEvent;
import io.distillery.schemas.job.StageJob;
import io.distillery.schemas.model.ModelRegistered;
import io.distillery.schemas.run.RunState;
import java.time.Duration;
import java.util.function.Predicate;
import org.apache.avro.specific.SpecificRecord;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.kstream.Branched;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.KStream;
import org.apache.kafka.streams.kstream.Named;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.kstream.Repartitioned;
import org.apache.kafka.streams.state.Stores;

/**
 * The planner as a Streams topology: registrations (keyed by modelId) are re-keyed by runId so that
 * they meet the job events (keyed by runId) in the same task; one processor owns the run store; its
 * output splits into stage jobs (to {@code distillery.jobs.<stage>}, by the job's stage) and run
 * states (to the compacted {@code distillery.runs}).
 */
public final class PlannerTopology {

  private PlannerTopology() {}

  /**
   * @param partitions partitions of the planner's inputs (one task each)
   * @param maxWaitingJobs jobs that may wait for workers across all tasks before new runs queue (0
   *     for no limit); each task gets its share, rounded up
   */
  public static Topology build(
      KafkaSettings kafka,
      RunPlanner planner,
      Predicate<String> stageExists,
      Duration tick,
      int partitions,
      int maxWaitingJobs) {
    int perTask =
        maxWaitingJobs == PlannerConfig.UNLIMITED
            ? Integer.MAX_VALUE
            : Math.max(1, Math.ceilDiv(maxWaitingJobs, partitions));
    AvroSerde<ModelRegistered> registered = kafka.serde(ModelRegistered.class);
    AvroSerde<JobEvent> events = kafka.serde(JobEvent.class);
    AvroSerde<RunState> runs = kafka.serde(RunState.class);
    AvroSerde<StageJob> jobs = kafka.serde(StageJob.class);

    StreamsBuilder b = new StreamsBuilder();
    b.addStateStore(
        Stores.keyValueStoreBuilder(
            Stores.persistentKeyValueStore(PlannerProcessor.STORE), Serdes.String(), runs));

    KStream<String, SpecificRecord> regs =
        b.stream(
                Topics.MODELS_REGISTERED,
                Consumed.with(Serdes.String(), registered).withName("registrations"))
            .selectKey((modelId, reg) -> reg.getRunId(), Named.as("key-by-run"))
            .repartition(
                Repartitioned.with(Serdes.String(), registered)
                    .withName("registrations-by-run")
                    .withNumberOfPartitions(partitions))
            .mapValues(v -> (SpecificRecord) v, Named.as("as-registration"));
    KStream<String, SpecificRecord> evs =
        b.stream(Topics.JOB_EVENTS, Consumed.with(Serdes.String(), events).withName("job-events"))
            .mapValues(v -> (SpecificRecord) v, Named.as("as-event"));

    regs.merge(evs, Named.as("inputs"))
        .process(
            () -> new PlannerProcessor(planner, stageExists, tick, perTask),
            Named.as("planner"),
            PlannerProcessor.STORE)
        .split(Named.as("out-"))
        .branch(
            (k, v) -> v instanceof StageJob,
            Branched.withConsumer(
                s ->
                    s.mapValues(v -> (StageJob) v, Named.as("as-job"))
                        .to(
                            (key, job, ctx) -> Topics.jobs(job.getStage()),
                            Produced.with(Serdes.String(), jobs).withName("dispatch")),
                "jobs"))
        .defaultBranch(
            Branched.withConsumer(
                s ->
                    s.mapValues(v -> (RunState) v, Named.as("as-run"))
                        .to(
                            Topics.RUNS,
                            Produced.with(Serdes.String(), runs).withName("publish-runs")),
                "runs"));
    return b.build();
  }
}
