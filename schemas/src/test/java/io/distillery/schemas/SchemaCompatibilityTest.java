package io.distillery.schemas;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.stream.Stream;
import org.apache.avro.Schema;
import org.apache.avro.SchemaCompatibility;
import org.apache.avro.SchemaCompatibility.SchemaCompatibilityType;
import org.junit.jupiter.api.Test;

/**
 * Every schema must stay BACKWARD compatible with the previous committed version: a consumer on the
 * new schema reads what producers on the old one wrote. Released versions are snapshotted under
 * {@code schemas/compat/vN}.
 */
class SchemaCompatibilityTest {

  private static final Path CURRENT =
      Path.of(System.getProperty("schemas.current", "src/main/avro"));
  private static final Path COMPAT = Path.of(System.getProperty("schemas.compat", "compat"));

  /** Parses a directory of .avsc files, common types first, keyed by full name. */
  static Map<String, Schema> parseAll(Path dir) throws IOException {
    List<Path> files;
    try (Stream<Path> s = Files.walk(dir)) {
      files = new ArrayList<>(s.filter(p -> p.toString().endsWith(".avsc")).toList());
    }
    files.sort(
        Comparator.comparing((Path p) -> !p.toString().contains("/common/"))
            .thenComparing(Path::toString));
    Schema.Parser parser = new Schema.Parser();
    Map<String, Schema> out = new TreeMap<>();
    for (Path f : files) {
      Schema schema = parser.parse(f.toFile());
      out.put(schema.getFullName(), schema);
    }
    return out;
  }

  static Path latestSnapshot() throws IOException {
    try (Stream<Path> s = Files.list(COMPAT)) {
      return s.filter(Files::isDirectory)
          .max(
              Comparator.comparingInt(
                  p -> Integer.parseInt(p.getFileName().toString().substring(1))))
          .orElseThrow(() -> new IllegalStateException("no compat/vN snapshot in " + COMPAT));
    }
  }

  @Test
  void shouldReadEveryPreviousVersionWhenSchemasEvolve() throws IOException {
    Map<String, Schema> current = parseAll(CURRENT);
    Map<String, Schema> previous = parseAll(latestSnapshot());
    assertThat(current)
        .containsKeys(
            "io.distillery.schemas.model.ModelRegistered",
            "io.distillery.schemas.job.StageJob",
            "io.distillery.schemas.job.JobEvent",
            "io.distillery.schemas.run.RunState",
            "io.distillery.schemas.deployment.DeploymentEvent",
            "io.distillery.schemas.misfire.Misfire",
            "io.distillery.schemas.dlq.DeadLetter");
    List<String> broken = new ArrayList<>();
    previous.forEach(
        (name, old) -> {
          Schema now = current.get(name);
          if (now == null) {
            broken.add(name + ": removed");
            return;
          }
          var result = SchemaCompatibility.checkReaderWriterCompatibility(now, old);
          if (result.getType() != SchemaCompatibilityType.COMPATIBLE) {
            broken.add(name + ": " + result.getResult().getIncompatibilities());
          }
        });
    assertThat(broken).as("BACKWARD-incompatible schema changes").isEmpty();
  }

  @Test
  void shouldRejectAFieldAddedWithoutDefault() throws IOException {
    Schema old = parseAll(CURRENT).get("io.distillery.schemas.misfire.Misfire");
    String json =
        old.toString()
            .replace("\"fields\":[", "\"fields\":[{\"name\":\"severity\",\"type\":\"int\"},");
    Schema evolved = new Schema.Parser().parse(json);
    var result = SchemaCompatibility.checkReaderWriterCompatibility(evolved, old);
    assertThat(result.getType()).isEqualTo(SchemaCompatibilityType.INCOMPATIBLE);
  }
}
