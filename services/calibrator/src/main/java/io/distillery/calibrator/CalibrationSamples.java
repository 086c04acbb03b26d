package io.distillery.calibrator;

import com.fasterxml.jackson.core.JacksonException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.distillery.model.tasks.TaskExample;
import io.distillery.model.tasks.TaskGenerator;
import io.distillery.model.tasks.TaskKind;
import io.distillery.model.tasks.TaskSettings;
import io.distillery.model.tokenizer.TextTokenizer;
import io.distillery.stage.StageException;
import java.io.BufferedReader;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.List;
import java.util.Locale;
import java.util.TreeMap;
import java.util.stream.Stream;

/**
 * The calibration samples: their text (seeded task-suite prompts with their answers, or a user's
 * dataset file) and their token ids, truncated to the sequence length. Kept apart from the stage so
 * a test can feed the model exactly what the stage fed it.
 */
final class CalibrationSamples {

  private static final ObjectMapper JSON = new ObjectMapper();

  private CalibrationSamples() {}

  /**
   * {@code samples} task-suite examples (prompt followed by answer) drawn with {@code settings},
   * the task kinds in turn, deterministic for a seed.
   */
  static List<String> fromTasks(int samples, long seed, TaskSettings settings) {
    TaskGenerator generator = new TaskGenerator(settings, seed);
    TaskKind[] kinds = TaskKind.values();
    List<String> texts = new ArrayList<>(samples);
    for (int i = 0; i < samples; i++) {
      TaskExample example = generator.next(kinds[i % kinds.length]);
      texts.add(example.prompt() + example.answer());
    }
    return texts;
  }

  /**
   * Up to {@code samples} non-blank samples of a dataset artefact, in file order. A {@code
   * .jsonl}/{@code .json} file has one object a line with a string {@code text}, or {@code prompt}
   * and optional {@code answer} (concatenated); any other file has one sample a line. A directory
   * artefact is read through its first such file (by name).
   *
   * @throws StageException.Fatal if a line is malformed or no file or sample is found
   * @throws IOException if the file cannot be read
   */
  static List<String> fromDataset(Path artefact, int samples)
      throws IOException, StageException.Fatal {
    Path file = datasetFile(artefact);
    boolean json = isJson(file);
    List<String> texts = new ArrayList<>();
    try (BufferedReader reader = Files.newBufferedReader(file, StandardCharsets.UTF_8)) {
      String line;
      int number = 0;
      while (texts.size() < samples && (line = reader.readLine()) != null) {
        number++;
        if (line.isBlank()) {
          continue;
        }
        String text = json ? jsonSample(file, number, line) : line;
        if (!text.isEmpty()) {
          texts.add(text);
        }
      }
    }
    if (texts.isEmpty()) {
      throw StageException.fatal(
          "calibration dataset " + file.getFileName() + " has no samples (source=dataset)");
    }
    return texts;
  }

  private static Path datasetFile(Path artefact) throws IOException, StageException.Fatal {
    if (!Files.isDirectory(artefact)) {
      return artefact;
    }
    try (Stream<Path> files = Files.list(artefact)) {
      List<Path> candidates = files.filter(Files::isRegularFile).sorted().toList();
      return candidates.stream()
          .filter(CalibrationSamples::isJson)
          .findFirst()
          .or(
              () ->
                  candidates.stream()
                      .filter(f -> f.getFileName().toString().endsWith(".txt"))
                      .findFirst())
          .orElseThrow(
              () ->
                  StageException.fatal(
                      "calibration dataset directory "
                          + artefact.getFileName()
                          + " holds no .jsonl, .json or .txt file"));
    }
  }

  private static boolean isJson(Path file) {
    String name = file.getFileName().toString().toLowerCase(Locale.ROOT);
    return name.endsWith(".jsonl") || name.endsWith(".json");
  }

  private static String jsonSample(Path file, int number, String line) throws StageException.Fatal {
    try {
      JsonNode node = JSON.readTree(line);
      JsonNode text = node.get("text");
      if (text != null && text.isTextual()) {
        return text.asText();
      }
      JsonNode prompt = node.get("prompt");
      JsonNode answer = node.get("answer");
      if (prompt != null
          && prompt.isTextual()
          && (answer == null || answer.isNull() || answer.isTextual())) {
        return prompt.asText() + (answer == null || answer.isNull() ? "" : answer.asText());
      }
    } catch (JacksonException e) {
      throw StageException.fatal(
          "calibration dataset "
              + file.getFileName()
              + ":"
              + number
              + " is not JSON: "
              + e.getOriginalMessage(),
          e);
    }
    throw StageException.fatal(
        "calibration dataset "
            + file.getFileName()
            + ":"
            + number
            + " needs a string \"text\" or \"prompt\" (with an optional \"answer\")");
  }

  /**
   * Token ids of each text with the tokenizer's BOS (if it has one), truncated to {@code seqLen};
   * empty samples are dropped.
   *
   * @throws StageException.Fatal if the tokenizer yields an id outside the model's vocabulary
   */
  static List<int[]> tokenize(
      List<String> texts, TextTokenizer tokenizer, int seqLen, int vocabSize)
      throws StageException.Fatal {
    List<int[]> out = new ArrayList<>(texts.size());
    for (String text : texts) {
      int[] ids = tokenizer.encode(text, true, false);
      if (ids.length > seqLen) {
        ids = Arrays.copyOf(ids, seqLen);
      }
      for (int id : ids) {
        if (id < 0 || id >= vocabSize) {
          throw StageException.fatal(
              "the model's tokenizer yields token id "
                  + id
                  + ", outside the model's vocabulary"
                  + " of "
                  + vocabSize
                  + "; tokenizer and checkpoint do not match");
        }
      }
      if (ids.length > 0) {
        out.add(ids);
      }
    }
    return out;
  }

  /**
   * Samples grouped into batches of equal length (so no padding token ever reaches the statistics),
   * at most {@code maxBatchTokens} tokens and {@code maxBatch} rows each, longest first (the first
   * batch fixes the histogram range, so it should see as many tokens as possible).
   */
  static List<int[][]> batches(List<int[]> samples, int maxBatchTokens, int maxBatch) {
    TreeMap<Integer, List<int[]>> byLength = new TreeMap<>(Comparator.reverseOrder());
    for (int[] s : samples) {
      byLength.computeIfAbsent(s.length, k -> new ArrayList<>()).add(s);
    }
    List<int[][]> batches = new ArrayList<>();
    for (var entry : byLength.entrySet()) {
      int rows = Math.max(1, Math.min(maxBatch, maxBatchTokens / entry.getKey()));
      List<int[]> group = entry.getValue();
      for (int from = 0; from < group.size(); from += rows) {
        batches.add(group.subList(from, Math.min(group.size(), from + rows)).toArray(int[][]::new));
      }
    }
    return batches;
  }
}
