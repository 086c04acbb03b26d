package io.distillery.model.tokenizer;

import io.distillery.model.CorruptCheckpointException;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.OptionalInt;

/**
 * Text to token ids and back, whatever the tokenizer behind it: our {@link ByteTokenizer} for
 * models the platform trains, or a Hugging Face {@code tokenizer.json} ({@link HfTokenizer}) for
 * real checkpoints.
 */
public interface TextTokenizer {

  /**
   * Ids of {@code text}; with {@code addBos}/{@code addEos} the special tokens are added when the
   * tokenizer has them.
   */
  int[] encode(String text, boolean addBos, boolean addEos);

  default int[] encode(String text) {
    return encode(text, false, false);
  }

  /** Text of {@code ids}, special tokens skipped. */
  String decode(int[] ids);

  int vocabSize();

  OptionalInt bosId();

  OptionalInt eosId();

  OptionalInt padId();

  /** Whether a model directory carries a tokenizer {@link #load} can read. */
  static boolean present(Path modelDirectory) {
    return Files.isRegularFile(modelDirectory.resolve(ByteTokenizer.TOKENIZER_FILE));
  }

  /**
   * The tokenizer of a model directory: ours when its {@code tokenizer.json} says {@value
   * ByteTokenizer#FORMAT}, otherwise the Hugging Face tokenizers library reads it.
   */
  static TextTokenizer load(Path modelDirectory) throws IOException {
    Path file = modelDirectory.resolve(ByteTokenizer.TOKENIZER_FILE);
    if (!Files.isRegularFile(file)) {
      throw new CorruptCheckpointException(
          modelDirectory, "has no " + ByteTokenizer.TOKENIZER_FILE);
    }
    if (HfTokenizer.isDistilleryFormat(file)) {
      return ByteTokenizer.load(modelDirectory);
    }
    return HfTokenizer.load(modelDirectory);
  }
}
