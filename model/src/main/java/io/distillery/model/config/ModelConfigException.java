package io.distillery.model.config;

import io.distillery.model.CheckpointException;
import java.nio.file.Path;

/**
 * A {@code config.json} describes a model this platform does not run, or is inconsistent: an
 * unsupported architecture or RoPE scaling type, heads that do not divide the hidden size, a
 * missing or mistyped key. The message names the file and the key.
 */
public class ModelConfigException extends CheckpointException {

  public ModelConfigException(Path source, String problem) {
    super(source, problem);
  }

  public ModelConfigException(Path source, String problem, Throwable cause) {
    super(source, problem, cause);
  }
}
