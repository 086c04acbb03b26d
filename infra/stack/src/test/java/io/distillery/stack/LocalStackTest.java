package io.distillery.stack;

import static org.assertj.core.api.Assertions.assertThat;

import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Path;
import java.util.Collection;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.common.Node;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class LocalStackTest {

  @TempDir Path runDir;

  @Test
  void shouldServeBrokerAndRegistryWhenStartedUnderRunDir() throws Exception {
    try (LocalStack stack = LocalStack.start(runDir);
        Admin admin =
            Admin.create(
                Map.of(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, stack.bootstrapServers()));
        HttpClient http = HttpClient.newHttpClient()) {
      Collection<Node> nodes = admin.describeCluster().nodes().get(30, TimeUnit.SECONDS);
      HttpResponse<String> subjects =
          http.send(
              HttpRequest.newBuilder(URI.create(stack.registryUrl() + "/subjects")).GET().build(),
              HttpResponse.BodyHandlers.ofString());

      assertThat(nodes).extracting(Node::id).containsExactly(EmbeddedKafka.NODE_ID);
      assertThat(stack.registryUrl()).startsWith("http://127.0.0.1:").endsWith("/apis/ccompat/v7");
      assertThat(subjects.statusCode()).isEqualTo(200);
      assertThat(runDir.resolve("kafka/" + EmbeddedKafka.LOG_DIR_NAME + "/meta.properties"))
          .isRegularFile();
      assertThat(runDir.resolve("logs").resolve(SchemaRegistryProcess.LOG_FILE_NAME))
          .isRegularFile();
      assertThat(runDir.resolve("registry")).isDirectory();
    }
  }
}
