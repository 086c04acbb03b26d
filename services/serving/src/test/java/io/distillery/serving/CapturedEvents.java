package io.distillery.serving;

import io.distillery.serving.events.EventSink;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import org.apache.avro.specific.SpecificRecord;

/** An event sink that keeps what the node publishes, for assertions. */
final class CapturedEvents implements EventSink {

  record Event(String topic, String key, SpecificRecord value) {}

  final List<Event> events = new CopyOnWriteArrayList<>();

  @Override
  public void offer(String topic, String key, SpecificRecord value, Runnable onDrop) {
    events.add(new Event(topic, key, value));
  }

  <T> List<T> of(Class<T> type) {
    return events.stream().map(Event::value).filter(type::isInstance).map(type::cast).toList();
  }
}
