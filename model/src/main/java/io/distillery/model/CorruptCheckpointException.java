package io.distillery.model;

import java.nio.file.Path;

/**
 * A model file does not follow its format: a truncated or inconsistent safetensors file, an index
 * that names missing tensors, a tokenizer file with the wrong fields. The message names the file
 * and the problem.
 */
public class CorruptCheckpointException extends CheckpointException {

  public CorruptCheckpointException(Path source, String problem) {
    super(source, problem);
  }

  public CorruptCheckpointException(Path source, String problem, Throwable cause) {
    super(source, problem, cause);
  }
}
