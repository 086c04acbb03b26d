package io.distillery.model.tasks;

import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Optional;

/**
 * Difficulty of the generated tasks.
 *
 * @param additionDigits each addend has 1 to this many significant digits, written zero-padded to
 *     this width
 * @param minTextLength shortest copy/reverse string
 * @param maxTextLength longest copy/reverse string
 * @param alphabet characters of copy/reverse strings and recall values
 * @param recallPairs key-value pairs per recall prompt (keys {@code k1..k9}, so at most 9)
 * @param minSortLength shortest digit list to sort
 * @param maxSortLength longest digit list to sort
 */
public record TaskSettings(
    int additionDigits,
    int minTextLength,
    int maxTextLength,
    String alphabet,
    int recallPairs,
    int minSortLength,
    int maxSortLength) {

  public TaskSettings {
    if (additionDigits < 1 || additionDigits > 9) {
      throw new IllegalArgumentException("additionDigits must be in [1, 9], got " + additionDigits);
    }
    if (minTextLength < 1 || maxTextLength < minTextLength) {
      throw new IllegalArgumentException(
          "text lengths must satisfy 1 <= minTextLength <= maxTextLength, got "
              + minTextLength
              + ".."
              + maxTextLength);
    }
    if (alphabet == null
        || alphabet.isEmpty()
        || alphabet.chars().anyMatch(c -> c < 'a' || c > 'z')) {
      throw new IllegalArgumentException(
          "alphabet must be non-empty lowercase a-z, got '" + alphabet + "'");
    }
    if (recallPairs < 1 || recallPairs > 9) {
      throw new IllegalArgumentException("recallPairs must be in [1, 9], got " + recallPairs);
    }
    if (minSortLength < 1 || maxSortLength < minSortLength) {
      throw new IllegalArgumentException(
          "sort lengths must satisfy 1 <= minSortLength <= maxSortLength, got "
              + minSortLength
              + ".."
              + maxSortLength);
    }
  }

  /**
   * The file a checkpoint directory carries to say which settings its model was trained on ({@code
   * distillery teacher} writes it), so that stages drawing task prompts for that model (calibration
   * samples, the distiller's {@code source: tasks}, the evaluator's generated fallback) draw them
   * from the same distribution.
   */
  public static final String FILE_NAME = "distillery-tasks.json";

  private static final ObjectMapper JSON =
      new ObjectMapper()
          .enable(DeserializationFeature.FAIL_ON_UNKNOWN_PROPERTIES)
          .enable(DeserializationFeature.FAIL_ON_NULL_FOR_PRIMITIVES)
          .enable(DeserializationFeature.FAIL_ON_MISSING_CREATOR_PROPERTIES)
          .enable(SerializationFeature.INDENT_OUTPUT);

  /** Writes these settings as {@value #FILE_NAME} into {@code directory}. */
  public void write(Path directory) throws IOException {
    JSON.writeValue(directory.resolve(FILE_NAME).toFile(), this);
  }

  /**
   * The settings in {@code directory}'s {@value #FILE_NAME}; empty if there is no such file.
   *
   * @throws IOException if the file cannot be read or does not hold valid settings; the message
   *     names the file
   */
  public static Optional<TaskSettings> read(Path directory) throws IOException {
    Path file = directory.resolve(FILE_NAME);
    if (!Files.isRegularFile(file)) {
      return Optional.empty();
    }
    if (Files.size(file) > 64 * 1024) {
      throw new IOException(
          file + " is " + Files.size(file) + " bytes; task settings are a small JSON object");
    }
    try {
      return Optional.of(JSON.readValue(file.toFile(), TaskSettings.class));
    } catch (IOException e) {
      throw new IOException(file + " does not hold valid task settings: " + e.getMessage(), e);
    }
  }

  /**
   * The settings {@code directory}'s model was trained on, or {@link #defaults()} if it does not
   * say.
   */
  public static TaskSettings forModel(Path directory) throws IOException {
    return read(directory).orElseGet(TaskSettings::defaults);
  }

  /** 3-digit addition, 3-6 letter strings, 3 recall pairs, 3-6 digit lists. */
  public static TaskSettings defaults() {
    return new TaskSettings(3, 3, 6, "abcdefghijklmnopqrstuvwxyz", 3, 3, 6);
  }

  public TaskSettings withAdditionDigits(int digits) {
    return new TaskSettings(
        digits, minTextLength, maxTextLength, alphabet, recallPairs, minSortLength, maxSortLength);
  }

  public TaskSettings withTextLength(int min, int max) {
    return new TaskSettings(
        additionDigits, min, max, alphabet, recallPairs, minSortLength, maxSortLength);
  }

  public TaskSettings withAlphabet(String letters) {
    return new TaskSettings(
        additionDigits,
        minTextLength,
        maxTextLength,
        letters,
        recallPairs,
        minSortLength,
        maxSortLength);
  }

  public TaskSettings withRecallPairs(int pairs) {
    return new TaskSettings(
        additionDigits,
        minTextLength,
        maxTextLength,
        alphabet,
        pairs,
        minSortLength,
        maxSortLength);
  }

  public TaskSettings withSortLength(int min, int max) {
    return new TaskSettings(
        additionDigits, minTextLength, maxTextLength, alphabet, recallPairs, min, max);
  }
}
