package io.distillery.runtime.kafka;

import static org.assertj.core.api.Assertions.assertThat;

import com.sun.net.httpserver.HttpServer;
import io.distillery.runtime.serde.SchemaRegistryException;
import java.io.IOException;
import java.net.ConnectException;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.util.Map;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.common.errors.SerializationException;
import org.apache.kafka.streams.errors.DeserializationExceptionHandler.Response;
import org.apache.kafka.streams.errors.DeserializationExceptionHandler.Result;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * Which failures dead-letter a record: undecodable bytes do; a registry that is down or failing
 * does not (the record may be fine), so the task fails and its thread is replaced, to read the
 * record again once the registry is back.
 */
class DeadLetterHandlerTest {

  HttpServer registry;
  DeadLetterHandler handler;
  final ConsumerRecord<byte[], byte[]> record =
      new ConsumerRecord<>(
          "distillery.runs",
          0,
          42L,
          "k".getBytes(StandardCharsets.UTF_8),
          new byte[] {0, 0, 0, 0, 7, 1, 2});

  @BeforeEach
  void start() throws IOException {
    registry = HttpServer.create(new InetSocketAddress("127.0.0.1", 0), 0);
    registry.createContext(
        "/",
        ex -> { // registers the DeadLetter schema the handler writes with
          byte[] body = "{\"id\":1}".getBytes(StandardCharsets.UTF_8);
          ex.sendResponseHeaders(200, body.length);
          ex.getResponseBody().write(body);
          ex.close();
        });
    registry.start();
    handler = new DeadLetterHandler();
    handler.configure(
        Map.of(
            DeadLetterHandler.REGISTRY_URL,
            "http://127.0.0.1:" + registry.getAddress().getPort(),
            DeadLetterHandler.CONSUMER_NAME,
            "test-app",
            DeadLetterHandler.TRANSIENT_BACKOFF_MS,
            0));
  }

  @AfterEach
  void stop() {
    registry.stop(0);
  }

  @Test
  void shouldDeadLetterUndecodableBytes() {
    Response r =
        handler.handleError(
            null, record, new SerializationException("unknown magic byte 9 on runs"));

    assertThat(r.result()).isEqualTo(Result.RESUME);
    assertThat(r.deadLetterQueueRecords())
        .singleElement()
        .satisfies(p -> assertThat(p.topic()).isEqualTo("distillery.dlq.distillery.runs"));
  }

  @Test
  void shouldDeadLetterWhenTheRegistryDoesNotKnowTheSchemaId() {
    SerializationException e =
        new SerializationException(
            "schema id 7 on runs cannot be resolved",
            new SchemaRegistryException("GET /schemas/ids/7 -> HTTP 404", 404, 40403));

    assertThat(handler.handleError(null, record, e).result()).isEqualTo(Result.RESUME);
  }

  @Test
  void shouldFailTheTaskWithoutDeadLetteringWhenTheRegistryIsUnreachable() {
    SerializationException e =
        new SerializationException(
            "schema id 7 on runs cannot be resolved",
            new SchemaRegistryException(
                "schema registry is unreachable", new ConnectException("Connection refused")));

    Response r = handler.handleError(null, record, e);

    assertThat(r.result()).isEqualTo(Result.FAIL);
    assertThat(r.deadLetterQueueRecords()).isEmpty();
  }

  @Test
  void shouldFailTheTaskWithoutDeadLetteringWhenTheRegistryAnswers5xx() {
    SerializationException e =
        new SerializationException(
            "schema id 7 on runs cannot be resolved",
            new SchemaRegistryException("GET /schemas/ids/7 -> HTTP 503", 503, 0));

    Response r = handler.handleError(null, record, e);

    assertThat(r.result()).isEqualTo(Result.FAIL);
    assertThat(r.deadLetterQueueRecords()).isEmpty();
  }

  @Test
  void shouldClassifyOnlyRegistryAndNetworkFailuresAsTransient() {
    assertThat(DeadLetterHandler.isTransient(new SerializationException("trailing bytes")))
        .isFalse();
    assertThat(
            DeadLetterHandler.isTransient(
                new SerializationException(
                    "x", new SchemaRegistryException("HTTP 422", 422, 42201))))
        .isFalse();
    assertThat(
            DeadLetterHandler.isTransient(
                new SerializationException(
                    "x", new SchemaRegistryException("HTTP 500", 500, 50001))))
        .isTrue();
    assertThat(
            DeadLetterHandler.isTransient(
                new SerializationException(
                    "x", new IOException("wrapped", new ConnectException("refused")))))
        .isTrue();
  }
}
