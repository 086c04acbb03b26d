package io.distillery.cli;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.distillery.runtime.kafka.KafkaSettings;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import picocli.CommandLine.Option;

/**
 * Where the cluster is: {@code --bootstrap}/{@code --registry}, else {@code DISTILLERY_BOOTSTRAP}/
 * {@code DISTILLERY_REGISTRY}, else the {@code stack.json} that {@code distillery up} wrote into
 * the run directory.
 */
final class ClusterOptions {

  @Option(
      names = "--bootstrap",
      description = "Kafka bootstrap servers (default: the local stack of --dir)")
  String bootstrap;

  @Option(
      names = "--registry",
      description = "Confluent-compatible schema registry URL (default: the local stack)")
  String registry;

  @Option(names = "--store", description = "Artefact store root (default: <dir>/store)")
  Path store;

  @Option(
      names = "--dir",
      description = "Run directory of the local stack (default: ${DEFAULT-VALUE})",
      defaultValue = "run")
  Path dir;

  static final String STACK_FILE = "stack.json";

  KafkaSettings kafka() {
    JsonNode stack = stackFile();
    String b =
        first(
            bootstrap,
            System.getenv("DISTILLERY_BOOTSTRAP"),
            stack == null ? null : stack.path("bootstrap").asText(null));
    String r =
        first(
            registry,
            System.getenv("DISTILLERY_REGISTRY"),
            stack == null ? null : stack.path("registry").asText(null));
    if (b == null || r == null) {
      throw new IllegalArgumentException(
          "no cluster: start one with './distillery up', or pass --bootstrap and"
              + " --registry (or set DISTILLERY_BOOTSTRAP and DISTILLERY_REGISTRY)");
    }
    return KafkaSettings.of(b, r);
  }

  Path storeRoot() {
    JsonNode stack = stackFile();
    String s =
        first(
            store == null ? null : store.toString(),
            System.getenv("DISTILLERY_STORE"),
            stack == null ? null : stack.path("store").asText(null));
    return s != null ? Path.of(s) : dir.resolve("store");
  }

  private JsonNode stackFile() {
    Path f = dir.resolve(STACK_FILE);
    if (!Files.exists(f)) {
      return null;
    }
    try {
      return new ObjectMapper().readTree(f.toFile());
    } catch (IOException e) {
      throw new IllegalArgumentException("cannot read " + f + ": " + e.getMessage());
    }
  }

  private static String first(String... values) {
    for (String v : values) {
      if (v != null && !v.isBlank()) {
        return v;
      }
    }
    return null;
  }
}
