package io.distillery.stack;

/**
 * A part of the local stack (broker or schema registry) could not be started: a missing registry
 * app, a port that could not be bound, a process that died or did not become ready in time. The
 * message says which part and where to look (the data directory or the log file).
 */
public final class StackStartException extends RuntimeException {

  private static final long serialVersionUID = 1L;

  public StackStartException(String message) {
    super(message);
  }

  public StackStartException(String message, Throwable cause) {
    super(message, cause);
  }
}
