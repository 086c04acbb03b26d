package io.distillery.feedback;

/**
 * A tripped incident that cannot become a run (no recipe, no teacher): logged, counted, recorded;
 * never retried.
 */
final class RedistillException extends Exception {
  RedistillException(String message) {
    super(message);
  }
}
