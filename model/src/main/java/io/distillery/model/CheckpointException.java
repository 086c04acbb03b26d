package io.distillery.model;

import io.distillery.stage.UnusableInput;
import java.io.IOException;
import java.nio.file.Path;
import java.util.Objects;

/**
 * A model artefact was refused: it is corrupt, unsafe to load, or describes a model this platform
 * does not run. Always fatal for the job that met it (the bytes will not change on a retry), even
 * though it is an {@link IOException} so that readers can declare one checked type.
 */
public abstract class CheckpointException extends IOException implements UnusableInput {

  private final transient Path source;
  private final String problem;

  protected CheckpointException(Path source, String problem) {
    this(source, problem, null);
  }

  protected CheckpointException(Path source, String problem, Throwable cause) {
    super(
        Objects.requireNonNull(source, "source")
            + ": "
            + Objects.requireNonNull(problem, "problem"),
        cause);
    this.source = source;
    this.problem = problem;
  }

  /** The file or directory that was refused. */
  public Path source() {
    return source;
  }

  /** What is wrong with it, without the file name. */
  public String problem() {
    return problem;
  }
}
