package io.distillery.stage;

/**
 * Why a stage failed, and whether trying again may help. The host reports the message on the run;
 * the planner retries only {@link Retryable} failures, with backoff, up to the recipe's limit.
 */
public sealed class StageException extends Exception
    permits StageException.Retryable, StageException.Fatal, StageException.Rejected {

  private StageException(String message, Throwable cause) {
    super(message, cause);
  }

  public boolean retryable() {
    return this instanceof Retryable;
  }

  public static Retryable retryable(String message, Throwable cause) {
    return new Retryable(message, cause);
  }

  public static Fatal fatal(String message) {
    return new Fatal(message, null);
  }

  public static Fatal fatal(String message, Throwable cause) {
    return new Fatal(message, cause);
  }

  /**
   * The stage did its work and judged the run's candidate unfit: no candidate passed the gates, a
   * canary was rolled back. The run ends REJECTED with this message as the reason; nothing
   * downstream runs and nothing is retried.
   */
  public static Rejected rejected(String message) {
    return new Rejected(message);
  }

  /** A verdict, not an error: see {@link #rejected(String)}. */
  public static final class Rejected extends StageException {
    public Rejected(String message) {
      super(message, null);
    }
  }

  /** Transient trouble (I/O, a broker hiccup): the job may succeed when tried again. */
  public static final class Retryable extends StageException {
    public Retryable(String message, Throwable cause) {
      super(message, cause);
    }
  }

  /** Bad params, corrupt or unsupported input: trying again cannot help. */
  public static final class Fatal extends StageException {
    public Fatal(String message, Throwable cause) {
      super(message, cause);
    }
  }
}
