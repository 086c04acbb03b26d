package io.distillery.distiller.data;

import com.fasterxml.jackson.core.JacksonException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.BufferedReader;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * Reads the distiller's two JSONL inputs: user prompt files ({@code {"prompt", "answer"?, "task"?}}
 * a line; a missing answer is filled by the teacher) and the feedback service's {@code
 * misfires.jsonl} ({@code {"prompt", "output", "expected", "reason", "deploymentId", "split"}};
 * rows of split "train" with an expected answer are used). A malformed line is an error naming the
 * file and line: the dataset is bad input, not a transient fault.
 */
public final class DataFiles {

  /** Name of the file inside a "misfires-jsonl" artefact directory. */
  public static final String MISFIRES = "misfires.jsonl";

  private static final ObjectMapper JSON = new ObjectMapper();

  private DataFiles() {}

  /** One prompt; {@code answer} null when the file has none. */
  public record Row(String task, String prompt, String answer) {}

  /**
   * Misfire rows usable for training, and how many rows were left out (held-out split or no
   * expected answer).
   */
  public record Misfires(List<Row> rows, int skipped) {}

  /** Thrown for a malformed file or line. */
  public static final class BadDataException extends Exception {
    public BadDataException(String message) {
      super(message);
    }
  }

  /**
   * The {@code .jsonl} files of an artefact: the file itself, or those in its directory in name
   * order.
   */
  public static List<Path> jsonlFiles(Path artefact) throws IOException, BadDataException {
    if (!Files.isDirectory(artefact)) {
      return List.of(artefact);
    }
    try (var s = Files.list(artefact)) {
      List<Path> files =
          s.filter(f -> f.getFileName().toString().endsWith(".jsonl")).sorted().toList();
      if (files.isEmpty()) {
        throw new BadDataException("no .jsonl file in " + artefact);
      }
      return files;
    }
  }

  public static List<Row> prompts(Path file) throws IOException, BadDataException {
    List<Row> rows = new ArrayList<>();
    for (Line line : lines(file)) {
      String prompt = text(line, "prompt", true);
      String answer = text(line, "answer", false);
      String task = text(line, "task", false);
      rows.add(new Row(task == null ? "custom" : task, prompt, answer));
    }
    return rows;
  }

  public static Misfires misfires(Path artefact) throws IOException, BadDataException {
    Path file = Files.isDirectory(artefact) ? artefact.resolve(MISFIRES) : artefact;
    if (!Files.exists(file)) {
      throw new BadDataException(
          "the misfires-jsonl artefact has no " + MISFIRES + ": " + artefact);
    }
    List<Row> rows = new ArrayList<>();
    int skipped = 0;
    for (Line line : lines(file)) {
      String prompt = text(line, "prompt", true);
      String expected = text(line, "expected", false);
      String split = text(line, "split", false);
      if (!"train".equals(split) || expected == null) {
        skipped++;
        continue;
      }
      rows.add(new Row("misfire", prompt, expected));
    }
    return new Misfires(rows, skipped);
  }

  private record Line(Path file, int number, JsonNode node) {}

  private static List<Line> lines(Path file) throws IOException, BadDataException {
    List<Line> lines = new ArrayList<>();
    try (BufferedReader reader = Files.newBufferedReader(file, StandardCharsets.UTF_8)) {
      String text;
      int number = 0;
      while ((text = reader.readLine()) != null) {
        number++;
        if (text.isBlank()) {
          continue;
        }
        try {
          JsonNode node = JSON.readTree(text);
          if (!node.isObject()) {
            throw new BadDataException(file + ":" + number + ": not a JSON object");
          }
          lines.add(new Line(file, number, node));
        } catch (JacksonException e) {
          throw new BadDataException(file + ":" + number + ": not JSON: " + e.getOriginalMessage());
        }
      }
    }
    return lines;
  }

  private static String text(Line line, String field, boolean required) throws BadDataException {
    JsonNode value = line.node().get(field);
    if (value == null || value.isNull()) {
      if (required) {
        throw new BadDataException(
            line.file() + ":" + line.number() + ": needs a string field \"" + field + "\"");
      }
      return null;
    }
    if (!value.isTextual() || (required && value.asText().isEmpty())) {
      throw new BadDataException(
          line.file()
              + ":"
              + line.number()
              + ": \""
              + field
              + "\" must be a "
              + (required ? "non-empty " : "")
              + "string");
    }
    return value.asText();
  }
}
