package io.distillery.cli;

import io.distillery.runtime.kafka.KafkaSettings;
import io.distillery.runtime.kafka.Topics;
import io.distillery.runtime.serde.AvroSerde;
import io.distillery.schemas.run.RunState;
import java.time.Duration;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.Consumer;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.TopicPartition;

/**
 * Reads the compacted runs topic from the start, without a consumer group: the latest state of
 * every run.
 */
final class RunsView implements AutoCloseable {

  private final KafkaConsumer<String, byte[]> consumer;
  private final AvroSerde<RunState> serde;
  private final Map<String, RunState> runs = new LinkedHashMap<>();
  private final List<TopicPartition> partitions;

  RunsView(KafkaSettings kafka) {
    this.consumer = new KafkaConsumer<>(kafka.consumer(null, "distillery-cli"));
    this.serde = kafka.serde(RunState.class);
    this.partitions =
        consumer.partitionsFor(Topics.RUNS, Duration.ofSeconds(15)).stream()
            .map(p -> new TopicPartition(p.topic(), p.partition()))
            .toList();
    if (partitions.isEmpty()) {
      throw new IllegalStateException(
          "topic " + Topics.RUNS + " does not exist: is the planner running?");
    }
    consumer.assign(partitions);
    consumer.seekToBeginning(partitions);
  }

  /** Reads up to the current end of the topic. */
  Map<String, RunState> catchUp() {
    Map<TopicPartition, Long> end = consumer.endOffsets(partitions);
    while (partitions.stream().anyMatch(p -> consumer.position(p) < end.get(p))) {
      poll(Duration.ofMillis(200), s -> {});
    }
    return runs;
  }

  /** Polls once; calls {@code onChange} for every state read. */
  void poll(Duration timeout, Consumer<RunState> onChange) {
    for (ConsumerRecord<String, byte[]> rec : consumer.poll(timeout)) {
      if (rec.value() == null) {
        runs.remove(rec.key());
        continue;
      }
      RunState s = serde.deserialize(rec.topic(), rec.value());
      runs.put(s.getRunId(), s);
      onChange.accept(s);
    }
  }

  Map<String, RunState> runs() {
    return runs;
  }

  @Override
  public void close() {
    consumer.close(Duration.ofSeconds(2));
  }
}
