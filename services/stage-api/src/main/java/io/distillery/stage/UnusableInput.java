package io.distillery.stage;

/**
 * Marks an exception about an input that will be just as unusable on a retry: a corrupt or unsafe
 * checkpoint, a URI outside the store's roots. A stage may let such an exception escape; the worker
 * host reports it as a fatal failure instead of the retryable one it gives other I/O errors.
 * Implemented by exception types, so that libraries below the runtime (the model core) can say "do
 * not retry" without depending on it.
 */
public interface UnusableInput {}
