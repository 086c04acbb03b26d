package io.distillery.feedback;

import com.fasterxml.jackson.databind.node.ObjectNode;
import io.distillery.runtime.config.Settings;
import io.distillery.runtime.service.ServicePlugin;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Map;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Lets {@code distillery up} start the feedback loop in-process; writes {@code
 * <runDir>/feedback.json} with the URL of its {@code /misfires} view, where {@code distillery
 * misfires} finds it.
 */
public final class FeedbackService implements ServicePlugin {

  public static final String URL_FILE = "feedback.json";
  private static final Logger LOG = LoggerFactory.getLogger(FeedbackService.class);

  @Override
  public String name() {
    return "feedback";
  }

  @Override
  public int order() {
    return 30;
  }

  @Override
  public AutoCloseable start(Environment env) throws Exception {
    Map<String, String> values = env.settings("feedback");
    values.put("DISTILLERY_FEEDBACK_STATE_DIR", env.runDir().resolve("feedback-state").toString());
    values.putIfAbsent("DISTILLERY_FEEDBACK_HTTP_PORT", "0");
    Settings settings = new Settings("feedback", values);
    FeedbackConfig config = FeedbackConfig.from(settings);
    LOG.info("feedback config: {}", settings.describe());
    FeedbackApp app = FeedbackApp.start(config, env.vertx()).awaitRunning(Duration.ofSeconds(60));
    if (app.url() != null) {
      ObjectNode info = JsonSerde.JSON.createObjectNode().put("url", app.url());
      Path file = env.runDir().resolve(URL_FILE);
      Files.writeString(file, info.toPrettyString());
    }
    return app;
  }
}
