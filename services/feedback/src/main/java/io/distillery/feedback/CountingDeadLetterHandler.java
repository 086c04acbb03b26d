package io.distillery.feedback;

import io.distillery.runtime.kafka.DeadLetterHandler;
import java.util.Map;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.streams.errors.DeserializationExceptionHandler;
import org.apache.kafka.streams.errors.DeserializationExceptionHandler.Result;
import org.apache.kafka.streams.errors.ErrorHandlerContext;

/**
 * The platform's {@link DeadLetterHandler} (undecodable record to {@code distillery.dlq.<topic>},
 * processing goes on), plus the {@code dropped{reason=undecodable}} count of the records it
 * dead-lettered (not of those a registry outage held back) of this service's metrics, passed in the
 * Streams properties.
 */
public final class CountingDeadLetterHandler implements DeserializationExceptionHandler {

  static final String METRICS = "distillery.feedback.metrics";

  private final DeadLetterHandler delegate = new DeadLetterHandler();
  private FeedbackMetrics metrics;

  @Override
  public void configure(Map<String, ?> configs) {
    delegate.configure(configs);
    this.metrics = configs.get(METRICS) instanceof FeedbackMetrics m ? m : null;
  }

  @Override
  public Response handleError(
      ErrorHandlerContext context, ConsumerRecord<byte[], byte[]> record, Exception exception) {
    Response response = delegate.handleError(context, record, exception);
    if (metrics != null
        && response.result() == Result.RESUME) { // not a registry outage: the record was dropped
      metrics.dropped("undecodable");
    }
    return response;
  }
}
