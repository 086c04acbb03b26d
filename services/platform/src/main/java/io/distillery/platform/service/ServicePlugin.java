package io.distillery.platform.service;

import io.vertx.core.Vertx;
import java.nio.file.Path;

/**
 * A long-running Distillery service other than a stage worker (the planner, serving nodes, the feedback loop), found
 * with {@link java.util.ServiceLoader} so that the one-process {@code distillery up} can start whatever is on its class
 * path without depending on those modules. In production each runs in its own process from its own {@code main}.
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
  record Environment(String bootstrap, String registryUrl, Path runDir, Path storeRoot, Vertx vertx) {}
}
