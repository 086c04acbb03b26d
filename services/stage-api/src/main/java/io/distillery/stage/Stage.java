package io.distillery.stage;

/**
 * One kind of work in a recipe: a calibrator, a quantizer, or a user's own {@code my-lora-merger}.
 * An implementation is annotated with {@link StagePlugin} (its name = the topic suffix it serves,
 * and its params record) and listed in {@code META-INF/services/io.distillery.stage.Stage}. The
 * worker host owns Kafka, retries, caching and events; a stage only turns inputs into outputs.
 *
 * @param <P> the params record of this stage
 */
public interface Stage<P extends Record> {

  /**
   * Does the work. Blocking is expected (the host runs it off the event loop, with the consumer
   * paused). Report progress through {@link StageContext#progress}; write outputs under {@link
   * StageContext#scratch()} and return them. Throw {@link StageException.Retryable} for transient
   * trouble and {@link StageException.Fatal} for bad params or corrupt inputs. {@link
   * InterruptedException} means the worker is shutting down: stop promptly.
   */
  StageResult run(StageContext<P> ctx) throws StageException, InterruptedException;
}
