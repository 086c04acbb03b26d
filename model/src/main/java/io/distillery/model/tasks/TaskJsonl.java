package io.distillery.model.tasks;

import com.fasterxml.jackson.core.JacksonException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.BufferedReader;
import java.io.BufferedWriter;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/** Examples as JSON lines, one {@code {"task","prompt","answer"}} object a line, UTF-8. */
public final class TaskJsonl {

  private static final ObjectMapper JSON = new ObjectMapper();

  private TaskJsonl() {}

  public static void write(Path file, List<TaskExample> examples) throws IOException {
    Path parent = file.toAbsolutePath().getParent();
    if (parent != null) {
      Files.createDirectories(parent);
    }
    try (BufferedWriter writer = Files.newBufferedWriter(file, StandardCharsets.UTF_8)) {
      for (TaskExample example : examples) {
        ObjectNode node = JSON.createObjectNode();
        node.put("task", example.task());
        node.put("prompt", example.prompt());
        node.put("answer", example.answer());
        writer.write(JSON.writeValueAsString(node));
        writer.write('\n');
      }
    }
  }

  /**
   * Reads examples; blank lines are skipped, a missing {@code task} reads as {@code "custom"}.
   *
   * @throws IOException with the file and line number when a line is not a valid example
   */
  public static List<TaskExample> read(Path file) throws IOException {
    List<TaskExample> examples = new ArrayList<>();
    try (BufferedReader reader = Files.newBufferedReader(file, StandardCharsets.UTF_8)) {
      String line;
      int number = 0;
      while ((line = reader.readLine()) != null) {
        number++;
        if (line.isBlank()) {
          continue;
        }
        try {
          JsonNode node = JSON.readTree(line);
          JsonNode prompt = node.get("prompt");
          JsonNode answer = node.get("answer");
          if (prompt == null || !prompt.isTextual() || answer == null || !answer.isTextual()) {
            throw new IOException(
                file + ":" + number + ": needs string fields \"prompt\" and \"answer\"");
          }
          JsonNode task = node.get("task");
          examples.add(
              new TaskExample(
                  task == null || task.isNull() ? "custom" : task.asText(),
                  prompt.asText(),
                  answer.asText()));
        } catch (JacksonException | IllegalArgumentException e) {
          throw new IOException(file + ":" + number + ": " + e.getMessage(), e);
        }
      }
    }
    return examples;
  }
}
