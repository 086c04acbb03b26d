package io.distillery.serving;

import static org.assertj.core.api.Assertions.assertThat;

import io.distillery.runtime.kafka.KafkaSettings;
import io.distillery.serving.events.BufferedKafkaSink;
import io.vertx.core.json.JsonObject;
import java.net.ServerSocket;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * With no reachable broker or registry the node keeps answering, and the lost misfires are counted.
 */
class MisfireBufferTest {

  @TempDir Path tmp;

  @Test
  void shouldKeepAnsweringAndCountDroppedMisfiresWhenKafkaIsUnreachable() throws Exception {
    int deadPort;
    try (ServerSocket s = new ServerSocket(0)) {
      deadPort = s.getLocalPort();
    }
    KafkaSettings kafka = KafkaSettings.of("127.0.0.1:" + deadPort, "http://127.0.0.1:" + deadPort);
    BufferedKafkaSink sink = new BufferedKafkaSink(kafka, "buffer-test", 2, Duration.ofMillis(200));
    Path model = TinyCheckpoints.write(Files.createDirectories(tmp.resolve("m")), 32, 2, 31);
    ServingConfig config =
        ServingConfig.of(null, null, null)
            .withNodeId("offline")
            .withConfidenceThreshold(Double.NEGATIVE_INFINITY);
    try (ServingNode node = ServingNode.start(config, sink)) {
      node.serveLocal("chat", model, null);
      // warm-up: the first request in a JVM loads the engine, which has nothing to do with Kafka
      assertThat(
              Http.complete(node.url(), new JsonObject().put("prompt", "w").put("max_tokens", 1))
                  .status())
          .isEqualTo(200);
      int requests = 12;
      long slowest = 0;
      for (int i = 0; i < requests; i++) {
        long start = System.nanoTime();
        Http.Reply r =
            Http.complete(
                node.url(),
                new JsonObject()
                    .put("prompt", "p" + i)
                    .put("max_tokens", 2)
                    .put("verify", "never"));
        slowest = Math.max(slowest, System.nanoTime() - start);
        assertThat(r.status()).as(r.text()).isEqualTo(200);
      }
      assertThat(Duration.ofNanos(slowest))
          .as("no request waits on Kafka")
          .isLessThan(Duration.ofSeconds(2));

      long deadline = System.nanoTime() + Duration.ofSeconds(30).toNanos();
      while (node.misfiresDropped() < requests && System.nanoTime() < deadline) {
        Thread.sleep(20);
      }
      assertThat(node.misfiresDropped()).isEqualTo(requests);
      assertThat(Http.get(node.url(), "/metrics").text())
          .contains("distillery_misfires_dropped_total " + requests + ".0");
      assertThat(Http.get(node.url(), "/health").status()).isEqualTo(200);
    }
  }
}
