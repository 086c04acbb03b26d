package io.distillery.evaluator.measure;

import com.fasterxml.jackson.core.JacksonException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.distillery.model.tasks.TaskExample;
import io.distillery.model.tasks.TaskJsonl;
import io.distillery.model.tasks.TaskKind;
import io.distillery.model.tasks.TaskSettings;
import io.distillery.model.tasks.TaskSuite;
import java.io.BufferedReader;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * Where the eval prompts come from, in order of preference: the user's eval JSONL ({@code dataset}
 * param), the held-out {@code test.jsonl} the teacher trainer writes next to the reference
 * checkpoint, or a generated task-suite test split (all task kinds, seeded, with the task settings
 * the reference model was trained on, else the defaults; see {@link TaskSettings#forModel}). And
 * the held-out misfires of a {@code misfires-jsonl} dataset.
 */
public final class EvalData {

  /** The file the teacher trainer writes next to its checkpoint with the held-out test prompts. */
  public static final String TEST_FILE = "test.jsonl";

  /** The file inside a {@code misfires-jsonl} artefact directory. */
  public static final String MISFIRES_FILE = "misfires.jsonl";

  private static final ObjectMapper JSON = new ObjectMapper();

  /** Eval prompts and a description of where they came from. */
  public record EvalSet(List<TaskExample> examples, String source) {}

  private EvalData() {}

  /**
   * At most {@code samples} eval examples.
   *
   * @throws IOException with the file and line when a JSONL line is not an example
   * @throws IllegalArgumentException when the chosen file holds no example
   */
  public static EvalSet examples(Path dataset, Path reference, int samples, long seed)
      throws IOException {
    Path test = reference == null ? null : reference.resolve(TEST_FILE);
    if (dataset != null || (test != null && Files.isRegularFile(test))) {
      Path file = dataset != null ? dataset : test;
      List<TaskExample> all = TaskJsonl.read(file);
      if (all.isEmpty()) {
        throw new IllegalArgumentException("eval dataset " + file + " holds no example");
      }
      return new EvalSet(all.subList(0, Math.min(samples, all.size())), file.toString());
    }
    TaskSettings settings =
        reference == null ? TaskSettings.defaults() : TaskSettings.forModel(reference);
    List<TaskExample> generated =
        TaskSuite.generate(List.of(TaskKind.values()), settings, 0, 0, samples, seed).test();
    return new EvalSet(
        generated, "generated task suite (seed " + seed + ", " + samples + " prompts)");
  }

  /**
   * The {@code split = "heldout"} rows of a misfires dataset (a directory holding {@value
   * #MISFIRES_FILE}, or the file itself) that carry an expected answer, as examples of task {@code
   * misfire}; at most {@code samples}.
   */
  public static List<TaskExample> heldOutMisfires(Path artefact, int samples) throws IOException {
    Path file = Files.isDirectory(artefact) ? artefact.resolve(MISFIRES_FILE) : artefact;
    if (!Files.isRegularFile(file)) {
      throw new IOException("misfires dataset " + artefact + " has no " + MISFIRES_FILE);
    }
    List<TaskExample> heldOut = new ArrayList<>();
    try (BufferedReader reader = Files.newBufferedReader(file, StandardCharsets.UTF_8)) {
      String line;
      int number = 0;
      while ((line = reader.readLine()) != null && heldOut.size() < samples) {
        number++;
        if (line.isBlank()) {
          continue;
        }
        JsonNode row;
        try {
          row = JSON.readTree(line);
        } catch (JacksonException e) {
          throw new IOException(
              file + ":" + number + ": not a JSON object: " + e.getOriginalMessage(), e);
        }
        String prompt = row.path("prompt").asText("");
        JsonNode expected = row.get("expected");
        if ("heldout".equals(row.path("split").asText())
            && !prompt.isEmpty()
            && expected != null
            && expected.isTextual()) {
          heldOut.add(new TaskExample("misfire", prompt, expected.asText()));
        }
      }
    }
    return heldOut;
  }
}
