package io.distillery.feedback;

import io.distillery.runtime.config.Settings;
import java.util.concurrent.CountDownLatch;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The feedback service in its own process: {@code DISTILLERY_FEEDBACK_*} settings from the
 * environment.
 */
public final class FeedbackMain {

  private static final Logger LOG = LoggerFactory.getLogger(FeedbackMain.class);

  private FeedbackMain() {}

  public static void main(String[] args) throws Exception {
    Settings settings = new Settings("feedback", System.getenv());
    FeedbackConfig config = FeedbackConfig.from(settings);
    LOG.info("feedback config: {}", settings.describe());
    FeedbackApp app = FeedbackApp.start(config, null);
    CountDownLatch done = new CountDownLatch(1);
    Runtime.getRuntime()
        .addShutdownHook(
            new Thread(
                () -> {
                  app.close();
                  done.countDown();
                },
                "feedback-shutdown"));
    done.await();
  }
}
