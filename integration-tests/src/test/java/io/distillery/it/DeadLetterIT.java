package io.distillery.it;

import static org.assertj.core.api.Assertions.assertThat;

import io.distillery.runtime.kafka.Topics;
import io.distillery.schemas.dlq.DeadLetter;
import io.distillery.schemas.run.RunStatus;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * Garbage on a jobs topic (and on the planner's inputs) goes to the DLQ with its error; valid work
 * goes on.
 */
class DeadLetterIT {

  static Cluster.Services services;

  @BeforeAll
  static void start() throws Exception {
    services = Cluster.services(true, "dlq", "hash");
  }

  @AfterAll
  static void stop() {
    services.close();
  }

  static List<DeadLetter> deadLetters(String topic, String key, int atLeast) {
    var serde = Cluster.kafka().serde(DeadLetter.class);
    String dlq = Topics.dlq(topic);
    List<DeadLetter> found = new ArrayList<>();
    try (KafkaConsumer<String, byte[]> c =
        new KafkaConsumer<>(Cluster.kafka().consumer(null, "it-dlq"))) {
      List<TopicPartition> parts =
          c.partitionsFor(dlq).stream().map(p -> new TopicPartition(dlq, p.partition())).toList();
      c.assign(parts);
      c.seekToBeginning(parts);
      long deadline = System.nanoTime() + Duration.ofSeconds(60).toNanos();
      while (found.size() < atLeast && System.nanoTime() < deadline) {
        c.poll(Duration.ofMillis(200))
            .forEach(
                r -> {
                  if (key.equals(r.key())) {
                    found.add(serde.deserialize(r.topic(), r.value()));
                  }
                });
      }
    }
    return found;
  }

  @Test
  void shouldDeadLetterGarbageAndKeepConsumingWhenAJobIsUndecodable() throws Exception {
    String key = "garbage-" + System.nanoTime();
    String jobs = Topics.jobs("hash");
    try (var p =
        new KafkaProducer<>(
            Cluster.kafka().producer("it"), new StringSerializer(), new ByteArraySerializer())) {
      p.send(new ProducerRecord<>(jobs, key, new byte[] {42, 1, 2, 3, 4, 5})).get();
      p.send(new ProducerRecord<>(jobs, key, new byte[] {0, 0x7f, 0, 0, 0, 9}))
          .get(); // unknown schema id
      p.send(new ProducerRecord<>(Topics.JOB_EVENTS, key, "not avro".getBytes()))
          .get(); // at the planner
    }
    List<DeadLetter> letters = deadLetters(jobs, key, 2);
    assertThat(letters).hasSize(2);
    assertThat(letters.get(0).getError()).contains("unknown magic byte 42");
    assertThat(letters.get(1).getError()).contains("schema id 2130706432");
    assertThat(letters.get(0).getTopic()).isEqualTo(jobs);
    assertThat(letters.get(0).getConsumer()).isEqualTo("distillery-worker-hash");
    assertThat(letters.get(0).getValue().array()).containsExactly(42, 1, 2, 3, 4, 5);

    List<DeadLetter> plannerLetters = deadLetters(Topics.JOB_EVENTS, key, 1);
    assertThat(plannerLetters)
        .singleElement()
        .satisfies(d -> assertThat(d.getConsumer()).isEqualTo("distillery-planner"));

    // the next valid job still runs
    var reg =
        Cluster.cli(
            "register",
            "--model",
            Cluster.model("after garbage").toString(),
            "--recipe",
            Cluster.recipe("name: one\nstages:\n  a: { stage: hash }\n").toString());
    var done =
        Cluster.awaitRun(
            reg.out().trim(), r -> r.getStatus() != RunStatus.RUNNING, Duration.ofSeconds(60));
    assertThat(done.getStatus()).isEqualTo(RunStatus.SUCCEEDED);
    assertThat(done.getStages().getFirst().getMetrics()).containsEntry("files", 2.0);
  }
}
