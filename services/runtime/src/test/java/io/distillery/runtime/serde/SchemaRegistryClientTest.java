package io.distillery.runtime.serde;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import com.sun.net.httpserver.HttpServer;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Deque;
import java.util.List;
import org.apache.avro.Schema;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * The client against a scripted HTTP peer: which answers it retries, which it reports, and the 409
 * race.
 */
class SchemaRegistryClientTest {

  record Answer(int status, String body) {}

  HttpServer server;
  final Deque<Answer> script = new ArrayDeque<>();
  final List<String> calls = new ArrayList<>();
  static final Schema SCHEMA =
      new Schema.Parser()
          .parse(
              "{\"type\":\"record\",\"name\":\"R\",\"fields\":[{\"name\":\"a\",\"type\":\"int\"}]}");

  @BeforeEach
  void start() throws IOException {
    start(0);
  }

  void start(int port) throws IOException {
    server = HttpServer.create(new InetSocketAddress("127.0.0.1", port), 0);
    server.createContext(
        "/",
        ex -> {
          calls.add(ex.getRequestMethod() + " " + ex.getRequestURI().getPath());
          Answer a =
              script.isEmpty()
                  ? new Answer(500, "{\"message\":\"script exhausted\"}")
                  : script.poll();
          byte[] body = a.body().getBytes(StandardCharsets.UTF_8);
          ex.sendResponseHeaders(a.status(), body.length);
          ex.getResponseBody().write(body);
          ex.close();
        });
    server.start();
  }

  @AfterEach
  void stop() {
    if (server != null) {
      server.stop(0);
    }
  }

  SchemaRegistryClient client(int port, java.time.Duration retryBudget) {
    return new SchemaRegistryClient("http://127.0.0.1:" + port + "/apis/ccompat/v7", retryBudget);
  }

  SchemaRegistryClient client() {
    return new SchemaRegistryClient(
        "http://127.0.0.1:" + server.getAddress().getPort() + "/apis/ccompat/v7");
  }

  @Test
  void shouldRetryWhenTheRegistryHasTransientTrouble() {
    script.add(
        new Answer(500, "{\"error_code\":50001,\"message\":\"Timeout trying to lock table\"}"));
    script.add(new Answer(503, "{}"));
    script.add(new Answer(200, "{\"id\":7}"));
    assertThat(client().register("t-value", SCHEMA)).isEqualTo(7);
    assertThat(calls)
        .hasSize(3)
        .allMatch(c -> c.equals("POST /apis/ccompat/v7/subjects/t-value/versions"));
  }

  @Test
  void shouldLookUpTheIdWhenAConcurrentRegistrationWon() {
    script.add(new Answer(409, "{\"error_code\":409,\"message\":\"already exists\"}"));
    script.add(
        new Answer(200, "{\"subject\":\"t-value\",\"id\":3,\"version\":1,\"schema\":\"x\"}"));
    assertThat(client().register("t-value", SCHEMA)).isEqualTo(3);
    assertThat(calls)
        .containsExactly(
            "POST /apis/ccompat/v7/subjects/t-value/versions",
            "POST /apis/ccompat/v7/subjects/t-value");
  }

  @Test
  void shouldRegisterAgainWhenTheWinnersVersionIsNotVisibleYetAfterAConcurrentRegistration() {
    script.add(
        new Answer(
            409,
            "{\"error_code\":409,\"message\":\"An artifact with ID 't-value' in group 'null'"
                + " already exists.\"}"));
    script.add(new Answer(404, "{\"error_code\":40403,\"message\":\"Schema not found\"}"));
    script.add(new Answer(200, "{\"id\":5}"));
    assertThat(client().register("t-value", SCHEMA)).isEqualTo(5);
    assertThat(calls)
        .containsExactly(
            "POST /apis/ccompat/v7/subjects/t-value/versions",
            "POST /apis/ccompat/v7/subjects/t-value",
            "POST /apis/ccompat/v7/subjects/t-value/versions");
  }

  @Test
  void shouldReportAnIncompatibleSchemaWithoutRetrying() {
    script.add(
        new Answer(
            409, "{\"error_code\":409,\"message\":\"Schema being registered is incompatible\"}"));
    script.add(new Answer(404, "{\"error_code\":40403,\"message\":\"Schema not found\"}"));
    assertThatThrownBy(() -> client().register("t-value", SCHEMA))
        .isInstanceOf(SchemaRegistryException.class)
        .hasMessageContaining("incompatible");
    script.add(new Answer(422, "{\"error_code\":42201,\"message\":\"Invalid schema\"}"));
    assertThatThrownBy(() -> client().register("u-value", SCHEMA))
        .hasMessageContaining("HTTP 422")
        .hasMessageContaining("Invalid schema");
    assertThat(calls).hasSize(3);
  }

  @Test
  void shouldWaitForARegistryThatIsDownAndResumeWhenItIsBack() throws Exception {
    int port = server.getAddress().getPort();
    server.stop(0); // the registry is down: connections are refused
    server = null;
    script.add(new Answer(200, "{\"id\":11}"));
    SchemaRegistryClient client = client(port, java.time.Duration.ofSeconds(30));
    Thread restart =
        Thread.ofPlatform()
            .start(
                () -> {
                  java.util.concurrent.locks.LockSupport.parkNanos(800_000_000L);
                  try {
                    start(port);
                  } catch (IOException e) {
                    throw new java.io.UncheckedIOException(e);
                  }
                });
    long t0 = System.nanoTime();

    assertThat(client.register("t-value", SCHEMA)).isEqualTo(11);

    restart.join();
    assertThat(java.time.Duration.ofNanos(System.nanoTime() - t0))
        .isGreaterThan(java.time.Duration.ofMillis(700));
    assertThat(calls).containsExactly("POST /apis/ccompat/v7/subjects/t-value/versions");
  }

  @Test
  void shouldReportAnUnreachableRegistryAsTransientOnceTheBudgetIsSpent() {
    int port = server.getAddress().getPort();
    server.stop(0);
    server = null;
    long t0 = System.nanoTime();

    assertThatThrownBy(() -> client(port, java.time.Duration.ofMillis(500)).schemaById(1))
        .isInstanceOfSatisfying(
            SchemaRegistryException.class,
            e -> {
              assertThat(e.isTransient()).isTrue();
              assertThat(e.getMessage()).contains("unreachable");
            });
    assertThat(java.time.Duration.ofNanos(System.nanoTime() - t0))
        .isBetween(java.time.Duration.ofMillis(300), java.time.Duration.ofSeconds(5));
  }

  @Test
  void shouldNotRetryANotFoundSchema() {
    script.add(new Answer(404, "{\"error_code\":40403,\"message\":\"Schema not found\"}"));
    assertThatThrownBy(() -> client().schemaById(9))
        .isInstanceOfSatisfying(
            SchemaRegistryException.class, e -> assertThat(e.isTransient()).isFalse());
    assertThat(calls).hasSize(1);
  }

  @Test
  void shouldRefuseANonHttpUrl() {
    assertThatThrownBy(() -> new SchemaRegistryClient("file:///etc/passwd"))
        .hasMessageContaining("must be http");
  }
}
