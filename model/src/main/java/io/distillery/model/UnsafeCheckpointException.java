package io.distillery.model;

import java.nio.file.Path;

/**
 * A model directory asks for something that could run code or read outside the directory: a pickled
 * PyTorch checkpoint ({@code pytorch_model.bin}, {@code *.pt}, ...), or an index whose shard names
 * escape the model directory. Such artefacts are never loaded.
 */
public class UnsafeCheckpointException extends CheckpointException {

  public UnsafeCheckpointException(Path source, String problem) {
    super(source, problem);
  }
}
