package io.distillery.serving;

import com.fasterxml.jackson.databind.ObjectMapper;
import io.distillery.runtime.service.ServicePlugin;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * Lets {@code distillery up} start one serving node hosting every deployment ({@code *}, unless
 * {@code DISTILLERY_SERVING_DEPLOYMENTS} says otherwise) and writes its URL to {@code
 * <runDir>/serving.json}.
 */
public final class ServingService implements ServicePlugin {

  public static final String URL_FILE = "serving.json";

  @Override
  public String name() {
    return "serving";
  }

  @Override
  public int order() {
    return 50;
  }

  @Override
  public AutoCloseable start(Environment env) throws Exception {
    Map<String, String> settings = env.settings("serving");
    settings.putIfAbsent("DISTILLERY_SERVING_NODE_ID", "serving-local");
    settings.putIfAbsent("DISTILLERY_SERVING_PORT", "0");
    ServingMain main = ServingMain.start(ServingConfig.fromEnv(settings), env.vertx());
    Path file = env.runDir().resolve(URL_FILE);
    Map<String, Object> info = new LinkedHashMap<>();
    info.put("url", main.node().url());
    info.put("node", main.node().config().nodeId());
    info.put("deployments", main.node().config().deployments());
    new ObjectMapper().writerWithDefaultPrettyPrinter().writeValue(file.toFile(), info);
    return () -> {
      main.close();
      Files.deleteIfExists(file);
    };
  }
}
