package io.distillery.distiller.train;

import io.distillery.model.CheckpointException;
import java.nio.file.Path;

/**
 * A training checkpoint left by an earlier attempt that does not fit the student being trained
 * (another shape, or tensors missing). Fatal: a retry meets the same checkpoint and the same
 * student, so it would fail the same way.
 */
public final class CheckpointMismatchException extends CheckpointException {

  public CheckpointMismatchException(Path checkpoint, String problem) {
    super(checkpoint, problem);
  }
}
