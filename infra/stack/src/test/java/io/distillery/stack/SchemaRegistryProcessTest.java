package io.distillery.stack;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.io.IOException;
import java.net.ConnectException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class SchemaRegistryProcessTest {

  private static final String CONFLUENT_JSON = "application/vnd.schemaregistry.v1+json";
  private static final Pattern ID = Pattern.compile("\"id\"\\s*:\\s*(\\d+)");

  private static final String RUN_STARTED_V1 =
      """
      {"type":"record","name":"RunStarted","namespace":"io.distillery.test",
       "fields":[{"name":"runId","type":"string"}]}""";

  /** Adds a field without a default: a v2 reader cannot read v1 data, so BACKWARD refuses it. */
  private static final String RUN_STARTED_V2_INCOMPATIBLE =
      """
      {"type":"record","name":"RunStarted","namespace":"io.distillery.test",
       "fields":[{"name":"runId","type":"string"},{"name":"owner","type":"string"}]}""";

  /** Adds a field with a default: BACKWARD compatible. */
  private static final String RUN_STARTED_V2_COMPATIBLE =
      """
      {"type":"record","name":"RunStarted","namespace":"io.distillery.test",
       "fields":[{"name":"runId","type":"string"},{"name":"owner","type":"string","default":"nobody"}]}""";

  private static final HttpClient HTTP =
      HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(5)).build();

  @TempDir static Path sharedDir;
  private static SchemaRegistryProcess registry;

  @TempDir Path tempDir;

  @BeforeAll
  static void startRegistry() {
    registry =
        SchemaRegistryProcess.start(SchemaRegistryProcess.locateApp(), sharedDir.resolve("logs"));
  }

  @AfterAll
  static void stopRegistry() {
    if (registry != null) {
      registry.close();
    }
  }

  @Test
  void shouldReturnSchemaByIdWhenRegisteredUnderSubject() throws Exception {
    HttpResponse<String> registered =
        register(registry, "distillery.test.lookup-value", RUN_STARTED_V1);
    assertThat(registered.statusCode()).as(registered.body()).isEqualTo(200);
    int id = id(registered.body());

    HttpResponse<String> byId = send(get(registry.url() + "/schemas/ids/" + id));
    assertThat(byId.statusCode()).isEqualTo(200);
    assertThat(byId.body()).contains("RunStarted").contains("runId");

    HttpResponse<String> latest =
        send(get(registry.url() + "/subjects/distillery.test.lookup-value/versions/latest"));
    assertThat(latest.statusCode()).isEqualTo(200);
    assertThat(id(latest.body())).isEqualTo(id);
  }

  @Test
  void shouldRefuseIncompatibleVersionWhenSubjectIsBackward() throws Exception {
    String subject = "distillery.test.compat-value";
    assertThat(register(registry, subject, RUN_STARTED_V1).statusCode()).isEqualTo(200);
    HttpResponse<String> config =
        send(
            HttpRequest.newBuilder(URI.create(registry.url() + "/config/" + subject))
                .header("Content-Type", CONFLUENT_JSON)
                .PUT(HttpRequest.BodyPublishers.ofString("{\"compatibility\":\"BACKWARD\"}"))
                .build());
    assertThat(config.statusCode()).as(config.body()).isEqualTo(200);

    HttpResponse<String> refused = register(registry, subject, RUN_STARTED_V2_INCOMPATIBLE);
    HttpResponse<String> accepted = register(registry, subject, RUN_STARTED_V2_COMPATIBLE);

    assertThat(refused.statusCode()).as(refused.body()).isEqualTo(409);
    assertThat(accepted.statusCode()).as(accepted.body()).isEqualTo(200);
    HttpResponse<String> versions =
        send(get(registry.url() + "/subjects/" + subject + "/versions"));
    assertThat(versions.body()).isEqualTo("[1,2]");
  }

  @Test
  void shouldKeepSchemaIdsWhenRestartedOnSameStorageDir() throws Exception {
    int id;
    try (SchemaRegistryProcess first =
        SchemaRegistryProcess.start(app(), tempDir, tempDir.resolve("db"))) {
      id = id(register(first, "distillery.test.persist-value", RUN_STARTED_V1).body());
    }
    try (SchemaRegistryProcess second =
        SchemaRegistryProcess.start(app(), tempDir, tempDir.resolve("db"))) {
      HttpResponse<String> byId = send(get(second.url() + "/schemas/ids/" + id));
      assertThat(byId.statusCode()).as(byId.body()).isEqualTo(200);
      assertThat(byId.body()).contains("RunStarted");
    }
  }

  @Test
  void shouldStopARegistryLeftRunningOnTheStorageByAKilledJvmButNotAReusedPid(@TempDir Path dir)
      throws Exception {
    Process orphan = new ProcessBuilder("sleep", "120").start();
    try {
      SchemaRegistryProcess.writePidFile(dir, orphan.toHandle());
      assertThat(SchemaRegistryProcess.stopStale(dir)).isTrue();
      assertThat(orphan.waitFor(10, TimeUnit.SECONDS)).isTrue();
      assertThat(dir.resolve(SchemaRegistryProcess.PID_FILE_NAME)).doesNotExist();

      Process other = new ProcessBuilder("sleep", "120").start();
      try {
        // the pid file names other's pid with another start time: a reused pid, left alone
        Files.writeString(dir.resolve(SchemaRegistryProcess.PID_FILE_NAME), other.pid() + " 1\n");
        assertThat(SchemaRegistryProcess.stopStale(dir)).isFalse();
        assertThat(other.isAlive()).isTrue();
      } finally {
        other.destroyForcibly();
      }
    } finally {
      orphan.destroyForcibly();
    }
  }

  @Test
  void shouldStopAnsweringWhenClosed() throws Exception {
    SchemaRegistryProcess own = SchemaRegistryProcess.start(app(), tempDir);
    String url = own.url();
    long pid = own.pid();
    assertThat(send(get(url + "/subjects")).statusCode()).isEqualTo(200);

    own.close();

    assertThat(ProcessHandle.of(pid).map(ProcessHandle::isAlive).orElse(false)).isFalse();
    assertThatThrownBy(() -> send(get(url + "/subjects"))).isInstanceOf(ConnectException.class);
    assertThat(Files.readString(own.logFile())).contains("Listening on:");
  }

  @Test
  void shouldNameBuildCommandWhenAppIsMissing() {
    assertThatThrownBy(() -> SchemaRegistryProcess.locateApp(null, null, tempDir))
        .isInstanceOf(StackStartException.class)
        .hasMessageContaining("./mvnw -pl infra/registry package");
    assertThatThrownBy(
            () ->
                SchemaRegistryProcess.locateApp(
                    tempDir.resolve("nope.jar").toString(), null, tempDir))
        .isInstanceOf(StackStartException.class)
        .hasMessageContaining("nope.jar")
        .hasMessageContaining("./mvnw -pl infra/registry package");
  }

  @Test
  void shouldFindAppWhenWorkingDirIsBelowProjectRoot() throws IOException {
    Path app = tempDir.resolve(SchemaRegistryProcess.APP_RELATIVE_PATH);
    Files.createDirectories(app.getParent());
    Files.writeString(app, "");
    Path nested = Files.createDirectories(tempDir.resolve("services/planner"));

    assertThat(SchemaRegistryProcess.locateApp(null, null, nested)).isEqualTo(app);
    assertThat(SchemaRegistryProcess.locateApp(null, app.toString(), Path.of("/"))).isEqualTo(app);
  }

  private static Path app() {
    return SchemaRegistryProcess.locateApp();
  }

  private static HttpResponse<String> register(
      SchemaRegistryProcess registry, String subject, String avroSchema)
      throws IOException, InterruptedException {
    String body = "{\"schema\":" + jsonString(avroSchema) + "}";
    return send(
        HttpRequest.newBuilder(URI.create(registry.url() + "/subjects/" + subject + "/versions"))
            .header("Content-Type", CONFLUENT_JSON)
            .POST(HttpRequest.BodyPublishers.ofString(body))
            .build());
  }

  private static HttpRequest get(String url) {
    return HttpRequest.newBuilder(URI.create(url)).header("Accept", CONFLUENT_JSON).GET().build();
  }

  private static HttpResponse<String> send(HttpRequest request)
      throws IOException, InterruptedException {
    return HTTP.send(request, HttpResponse.BodyHandlers.ofString());
  }

  private static int id(String json) {
    Matcher m = ID.matcher(json);
    assertThat(m.find()).as("no id in %s", json).isTrue();
    return Integer.parseInt(m.group(1));
  }

  /**
   * A JSON string literal; enough for Avro schema text (no control characters other than newlines).
   */
  private static String jsonString(String text) {
    return "\"" + text.replace("\\", "\\\\").replace("\"", "\\\"").replace("\n", "\\n") + "\"";
  }
}
