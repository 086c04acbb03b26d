package io.distillery.stack;

import java.nio.file.Path;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Everything Distillery needs outside its own services, on one machine without Docker: a Kafka
 * broker in this JVM and the schema registry as a child process, under one run directory. This is
 * what {@code distillery up} and the integration tests start.
 *
 * <p>Layout of the run directory; all of it survives a restart on the same directory, so topics,
 * records and the schema ids those records carry stay consistent:
 *
 * <pre>
 * runDir/kafka/      broker data ({@link EmbeddedKafka})
 * runDir/registry/   registry database (H2 file)
 * runDir/logs/       schema-registry.log
 * </pre>
 */
public final class LocalStack implements AutoCloseable {

  private static final Logger LOG = LoggerFactory.getLogger(LocalStack.class);

  private final Path runDir;
  private final EmbeddedKafka kafka;
  private final SchemaRegistryProcess registry;
  private final AtomicBoolean closed = new AtomicBoolean();

  private LocalStack(Path runDir, EmbeddedKafka kafka, SchemaRegistryProcess registry) {
    this.runDir = runDir;
    this.kafka = kafka;
    this.registry = registry;
  }

  /**
   * Starts the stack under {@code runDir} with the registry app found by {@link
   * SchemaRegistryProcess#locateApp()}.
   */
  public static LocalStack start(Path runDir) {
    return start(runDir, SchemaRegistryProcess.locateApp());
  }

  /**
   * Starts the stack under {@code runDir} with the given registry app. The registry JVM boots while
   * the broker starts in this one; if either fails, the other is stopped before the failure is
   * thrown.
   */
  public static LocalStack start(Path runDir, Path registryApp) {
    long startNanos = System.nanoTime();
    Path dir = runDir.toAbsolutePath();
    CompletableFuture<SchemaRegistryProcess> registryStart = new CompletableFuture<>();
    Thread.ofPlatform()
        .name("schema-registry-start")
        .daemon(true)
        .start(
            () -> {
              try {
                registryStart.complete(
                    SchemaRegistryProcess.start(
                        registryApp, dir.resolve("logs"), dir.resolve("registry")));
              } catch (Throwable t) {
                registryStart.completeExceptionally(t);
              }
            });
    EmbeddedKafka kafka;
    try {
      kafka = EmbeddedKafka.start(dir.resolve("kafka"));
    } catch (RuntimeException e) {
      try {
        registryStart.join().close();
      } catch (CompletionException registryFailure) {
        e.addSuppressed(registryFailure.getCause());
      }
      throw e;
    }
    SchemaRegistryProcess registry;
    try {
      registry = registryStart.join();
    } catch (CompletionException e) {
      kafka.close();
      throw e.getCause() instanceof RuntimeException r
          ? r
          : new StackStartException("Schema registry", e.getCause());
    }
    LocalStack stack = new LocalStack(dir, kafka, registry);
    LOG.info(
        "Local stack started runDir={} bootstrapServers={} registryUrl={} startMs={}",
        dir,
        stack.bootstrapServers(),
        stack.registryUrl(),
        TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - startNanos));
    return stack;
  }

  /** {@code host:port} of the broker, for {@code bootstrap.servers}. */
  public String bootstrapServers() {
    return kafka.bootstrapServers();
  }

  /**
   * Base URL of the registry's Confluent-compatible API, {@code
   * http://127.0.0.1:<port>/apis/ccompat/v7}.
   */
  public String registryUrl() {
    return registry.url();
  }

  /** The run directory everything lives under. */
  public Path runDir() {
    return runDir;
  }

  /** Stops the registry, then the broker; the run directory is kept. */
  @Override
  public void close() {
    if (!closed.compareAndSet(false, true)) {
      return;
    }
    try {
      registry.close();
    } finally {
      kafka.close();
    }
  }
}
