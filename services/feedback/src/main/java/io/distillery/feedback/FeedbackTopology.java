package io.distillery.feedback;

import io.distillery.runtime.kafka.Topics;
import io.distillery.schemas.deployment.DeploymentEvent;
import io.distillery.schemas.dlq.DeadLetter;
import io.distillery.schemas.misfire.Misfire;
import io.distillery.schemas.model.ModelRegistered;
import io.distillery.schemas.serving.ServingTraffic;
import java.time.Duration;
import org.apache.avro.specific.SpecificRecord;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.kstream.Branched;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.KStream;
import org.apache.kafka.streams.kstream.Named;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.state.Stores;

/**
 * The feedback loop as a Streams topology: deployments, serving traffic and misfires (all keyed by
 * deploymentId) merge into one {@link MisfireWindowProcessor}; its output splits into
 * re-distillation runs (to {@code distillery.models.registered}) and rejected misfires (to {@code
 * distillery.dlq.distillery.misfires}).
 */
final class FeedbackTopology {

  private FeedbackTopology() {}

  static Topology build(
      SerdeSource serdes,
      TriggerPolicy policy,
      MisfireDataset dataset,
      RedistillRuns runs,
      FeedbackMetrics metrics,
      String consumer,
      Duration tick) {
    var misfires = serdes.serde(Misfire.class);
    var traffic = serdes.serde(ServingTraffic.class);
    var deployments = serdes.serde(DeploymentEvent.class);
    var registered = serdes.serde(ModelRegistered.class);
    var letters = serdes.serde(DeadLetter.class);

    StreamsBuilder b = new StreamsBuilder();
    b.addStateStore(
        Stores.keyValueStoreBuilder(
            Stores.persistentKeyValueStore(MisfireWindowProcessor.DEPLOYMENTS),
            Serdes.String(),
            deployments));
    b.addStateStore(
        Stores.keyValueStoreBuilder(
            Stores.persistentKeyValueStore(MisfireWindowProcessor.WINDOWS),
            Serdes.String(),
            new JsonSerde<>(MisfireWindow.class)));
    b.addStateStore(
        Stores.keyValueStoreBuilder(
            Stores.persistentKeyValueStore(MisfireWindowProcessor.ROWS),
            Serdes.String(),
            new JsonSerde<>(MisfireRow.class)));
    b.addStateStore(
        Stores.keyValueStoreBuilder(
            Stores.persistentKeyValueStore(MisfireWindowProcessor.TRIGGERS),
            Serdes.String(),
            new JsonSerde<>(TriggerState.class)));
    b.addStateStore(
        Stores.keyValueStoreBuilder(
            Stores.persistentKeyValueStore(MisfireWindowProcessor.INCIDENTS),
            Serdes.String(),
            new JsonSerde<>(Trigger.class)));

    KStream<String, SpecificRecord> deps =
        b.stream(
                Topics.DEPLOYMENTS,
                Consumed.with(Serdes.String(), deployments).withName("deployments"))
            .mapValues(v -> (SpecificRecord) v, Named.as("as-deployment"));
    KStream<String, SpecificRecord> served =
        b.stream(
                Topics.SERVING_TRAFFIC, Consumed.with(Serdes.String(), traffic).withName("traffic"))
            .mapValues(v -> (SpecificRecord) v, Named.as("as-traffic"));
    KStream<String, SpecificRecord> wrong =
        b.stream(Topics.MISFIRES, Consumed.with(Serdes.String(), misfires).withName("misfires"))
            .mapValues(v -> (SpecificRecord) v, Named.as("as-misfire"));

    deps.merge(served, Named.as("deployments-and-traffic"))
        .merge(wrong, Named.as("inputs"))
        .process(
            () ->
                new MisfireWindowProcessor(
                    policy, dataset, runs, metrics, misfires.serializer(), consumer, tick),
            Named.as("misfire-windows"),
            MisfireWindowProcessor.DEPLOYMENTS,
            MisfireWindowProcessor.WINDOWS,
            MisfireWindowProcessor.ROWS,
            MisfireWindowProcessor.TRIGGERS,
            MisfireWindowProcessor.INCIDENTS)
        .split(Named.as("out-"))
        .branch(
            (k, v) -> v instanceof ModelRegistered,
            Branched.withConsumer(
                s ->
                    s.mapValues(v -> (ModelRegistered) v, Named.as("as-run"))
                        .to(
                            Topics.MODELS_REGISTERED,
                            Produced.with(Serdes.String(), registered).withName("start-runs")),
                "runs"))
        .defaultBranch(
            Branched.withConsumer(
                s ->
                    s.mapValues(v -> (DeadLetter) v, Named.as("as-dead-letter"))
                        .to(
                            Topics.dlq(Topics.MISFIRES),
                            Produced.with(Serdes.String(), letters).withName("dead-letters")),
                "dlq"));
    return b.build();
  }
}
