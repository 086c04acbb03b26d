package io.distillery.planner;

import io.distillery.runtime.kafka.TopicAdmin;
import io.distillery.runtime.kafka.Topics;
import java.util.Set;
import java.util.function.Predicate;

/**
 * Which stages some worker serves: those whose jobs topic exists (a worker host creates its topic
 * when it starts). The topic list is cached and refreshed on a miss, at most once a second.
 */
final class StageCatalog implements Predicate<String> {

  private final TopicAdmin admin;
  private volatile Set<String> topics = Set.of();
  private volatile long refreshedAt;

  StageCatalog(TopicAdmin admin) {
    this.admin = admin;
  }

  @Override
  public boolean test(String stage) {
    String topic = Topics.JOBS_PREFIX + stage;
    if (topics.contains(topic)) {
      return true;
    }
    long now = System.currentTimeMillis();
    if (now - refreshedAt > 1000) {
      topics = admin.list();
      refreshedAt = now;
    }
    return topics.contains(topic);
  }
}
