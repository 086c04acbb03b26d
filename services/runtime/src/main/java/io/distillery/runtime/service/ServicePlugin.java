package io.distillery.runtime.service;

import io.vertx.core.Vertx;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.Locale;
import java.util.Map;

/**
 * A long-running Distillery service other than a stage worker (the planner, serving nodes, the
 * feedback loop), found with {@link java.util.ServiceLoader} so that the one-process {@code
 * distillery up} can start whatever is on its class path without depending on those modules. In
 * production each runs in its own process from its own {@code main}.
 */
public interface ServicePlugin {

  /** A short name for logs: planner, serving, feedback. */
  String name();

  /** Lower starts first. */
  default int order() {
    return 100;
  }

  /** Starts the service; closing the result stops it. */
  AutoCloseable start(Environment env) throws Exception;

  /** What a service gets from the local stack. */
  record Environment(
      String bootstrap, String registryUrl, Path runDir, Path storeRoot, Vertx vertx) {

    /**
     * The process environment with this stack's bootstrap, registry and store set as {@code
     * DISTILLERY_<SERVICE>_*} settings, for the service's config record; the caller adds its own
     * keys.
     */
    public Map<String, String> settings(String service) {
      Map<String, String> settings = new HashMap<>(System.getenv());
      String prefix = "DISTILLERY_" + service.toUpperCase(Locale.ROOT) + "_";
      settings.put(prefix + "BOOTSTRAP", bootstrap);
      settings.put(prefix + "REGISTRY", registryUrl);
      settings.put(prefix + "STORE", storeRoot.toString());
      return settings;
    }
  }
}
