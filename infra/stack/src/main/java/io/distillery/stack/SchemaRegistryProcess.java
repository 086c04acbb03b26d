package io.distillery.stack;

import java.io.BufferedReader;
import java.io.BufferedWriter;
import java.io.IOException;
import java.io.InputStreamReader;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The schema registry of the local stack: the Apicurio Registry app that {@code infra/registry}
 * builds, run as a child process of this JVM on a free loopback port. It serves the
 * Confluent-compatible REST API at {@link #url()}, so clients written against a Confluent registry
 * work unchanged.
 *
 * <p>It owns the child process: its output is appended to {@value #LOG_FILE_NAME} in the given
 * directory, and the process with its descendants is destroyed on {@link #close()} or, if close is
 * never called, when this JVM shuts down. Storage is Apicurio's in-memory H2 database unless a
 * storage directory is given, in which case schemas (and so their ids, which Kafka records carry)
 * survive a restart.
 */
public final class SchemaRegistryProcess implements AutoCloseable {

  private static final Logger LOG = LoggerFactory.getLogger(SchemaRegistryProcess.class);

  /**
   * System property naming the registry app ({@code quarkus-run.jar}); wins over the environment
   * variable.
   */
  public static final String APP_PROPERTY = "distillery.registry.app";

  /** Environment variable naming the registry app, used when {@value #APP_PROPERTY} is not set. */
  public static final String APP_ENV = "DISTILLERY_REGISTRY_APP";

  /** Where {@code infra/registry} builds the app, relative to the project root. */
  public static final String APP_RELATIVE_PATH =
      "infra/registry/target/quarkus-app/quarkus-run.jar";

  /** Name of the log file written in the log directory. */
  public static final String LOG_FILE_NAME = "schema-registry.log";

  private static final String BUILD_HINT = "Build it with `./mvnw -pl infra/registry package`";
  private static final Pattern LISTENING =
      Pattern.compile("Listening on: https?://[^\\s:/]+:(\\d+)");
  private static final String CONFLUENT_API = "/apis/ccompat/v7";
  private static final Duration START_TIMEOUT = Duration.ofSeconds(90);
  private static final Duration STOP_TIMEOUT = Duration.ofSeconds(15);
  private static final int LOG_TAIL_LINES = 30;

  private final Process process;
  private final int port;
  private final Path logFile;
  private final Thread shutdownHook;
  private final AtomicBoolean closed;

  private SchemaRegistryProcess(
      Process process, int port, Path logFile, Thread shutdownHook, AtomicBoolean stopping) {
    this.process = process;
    this.port = port;
    this.logFile = logFile;
    this.shutdownHook = shutdownHook;
    this.closed = stopping;
  }

  /**
   * Finds the registry app: the {@value #APP_PROPERTY} system property, else the {@value #APP_ENV}
   * environment variable, else {@value #APP_RELATIVE_PATH} in the working directory or one of its
   * parents.
   *
   * @throws StackStartException when the named file, or any built app, is missing; the message says
   *     how to build it
   */
  public static Path locateApp() {
    return locateApp(
        System.getProperty(APP_PROPERTY), System.getenv(APP_ENV), Path.of("").toAbsolutePath());
  }

  static Path locateApp(String property, String env, Path workingDir) {
    if (property != null && !property.isBlank()) {
      return existingApp(Path.of(property), "system property " + APP_PROPERTY);
    }
    if (env != null && !env.isBlank()) {
      return existingApp(Path.of(env), "environment variable " + APP_ENV);
    }
    for (Path dir = workingDir.toAbsolutePath(); dir != null; dir = dir.getParent()) {
      Path candidate = dir.resolve(APP_RELATIVE_PATH);
      if (Files.isRegularFile(candidate)) {
        return candidate;
      }
    }
    throw new StackStartException(
        "Schema registry app not found: no "
            + APP_RELATIVE_PATH
            + " in "
            + workingDir.toAbsolutePath()
            + " or its parents, and neither -D"
            + APP_PROPERTY
            + " nor "
            + APP_ENV
            + " is set. "
            + BUILD_HINT
            + " from the project root.");
  }

  private static Path existingApp(Path app, String source) {
    if (!Files.isRegularFile(app)) {
      throw new StackStartException(
          "Schema registry app not found: "
              + app
              + " (from "
              + source
              + ") does not exist. "
              + BUILD_HINT
              + ".");
    }
    return app;
  }

  /** Starts the registry app {@code app} with in-memory storage, logging to {@code logDir}. */
  public static SchemaRegistryProcess start(Path app, Path logDir) {
    return launch(app, logDir, null, 0);
  }

  /**
   * Starts the registry app {@code app}, logging to {@code logDir} and keeping its H2 database in
   * {@code storageDir}, so registered schemas keep their ids across restarts on the same directory.
   */
  public static SchemaRegistryProcess start(Path app, Path logDir, Path storageDir) {
    return launch(app, logDir, storageDir, 0);
  }

  /**
   * As {@link #start(Path, Path, Path)}, on {@code port}: how a registry comes back after an outage
   * at the address its clients know (start it on the {@link #port()} of the one that was stopped,
   * with the same storage directory).
   */
  public static SchemaRegistryProcess start(Path app, Path logDir, Path storageDir, int port) {
    if (port <= 0 || port > 65535) {
      throw new IllegalArgumentException("registry port must be 1..65535, was " + port);
    }
    return launch(app, logDir, storageDir, port);
  }

  /**
   * Launches the app on {@code port} (0: a free one, which the app reports) and waits until it
   * answers.
   */
  private static SchemaRegistryProcess launch(Path app, Path logDir, Path storageDir, int port) {
    long startNanos = System.nanoTime();
    long deadline = startNanos + START_TIMEOUT.toNanos();
    Path appJar = existingApp(app.toAbsolutePath(), "argument");
    Path logFile = logDir.toAbsolutePath().resolve(LOG_FILE_NAME);
    List<String> command = command(appJar, storageDir, port);
    Process process;
    try {
      Files.createDirectories(logDir);
      if (storageDir != null) {
        Files.createDirectories(storageDir);
        stopStale(storageDir);
      }
      process =
          new ProcessBuilder(command)
              .directory(logDir.toAbsolutePath().toFile())
              .redirectErrorStream(true)
              .start();
    } catch (IOException e) {
      throw new StackStartException(
          "Schema registry: cannot launch " + String.join(" ", command), e);
    }
    AtomicBoolean stopping = new AtomicBoolean();
    Thread shutdownHook =
        Thread.ofPlatform()
            .name("schema-registry-stop")
            .unstarted(
                () -> {
                  stopping.set(true);
                  destroyTree(process);
                });
    Runtime.getRuntime().addShutdownHook(shutdownHook);
    CompletableFuture<Integer> listening = pumpOutput(process, logFile, stopping);
    SchemaRegistryProcess registry;
    try {
      int listeningPort =
          listening.get(Math.max(0, deadline - System.nanoTime()), TimeUnit.NANOSECONDS);
      registry = new SchemaRegistryProcess(process, listeningPort, logFile, shutdownHook, stopping);
      registry.awaitReady(deadline);
    } catch (TimeoutException | ExecutionException | InterruptedException | StackStartException e) {
      if (e instanceof InterruptedException) {
        Thread.currentThread().interrupt();
      }
      stopping.set(true);
      destroyTree(process);
      removeHook(shutdownHook);
      Throwable cause = e instanceof ExecutionException ? e.getCause() : e;
      throw new StackStartException(
          "Schema registry did not become ready within "
              + START_TIMEOUT
              + " ("
              + cause
              + "); log "
              + logFile
              + ", last lines:\n"
              + logTail(logFile),
          cause);
    }
    if (storageDir != null) {
      try {
        writePidFile(storageDir, process.toHandle());
      } catch (IOException e) {
        LOG.warn(
            "Schema registry: cannot write {} in {}: {}", PID_FILE_NAME, storageDir, e.toString());
      }
    }
    LOG.info(
        "Schema registry started url={} pid={} startMs={} storage={} log={}",
        registry.url(),
        process.pid(),
        TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - startNanos),
        storageDir == null ? "in-memory" : storageDir.toAbsolutePath(),
        logFile);
    return registry;
  }

  private static List<String> command(Path appJar, Path storageDir, int port) {
    List<String> command = new ArrayList<>();
    command.add(javaExecutable());
    // A registry for tests and a laptop: start fast and small rather than reach peak throughput.
    command.add("-XX:TieredStopAtLevel=1");
    command.add("-XX:+UseSerialGC");
    if (Runtime.version().feature() >= 23) {
      // Silences JDK 23+ warnings about Netty's and JBoss's use of sun.misc.Unsafe (JEP 471).
      command.add("--sun-misc-unsafe-memory-access=allow");
    }
    command.add("-Dquarkus.http.host=127.0.0.1");
    command.add("-Dquarkus.http.port=" + port);
    command.add("-Dquarkus.log.category.\"io.sentry\".level=ERROR");
    if (storageDir != null) {
      command.add(
          "-Dquarkus.datasource.jdbc.url=jdbc:h2:file:"
              + storageDir.toAbsolutePath().resolve("registry_db"));
    }
    command.add("-jar");
    command.add(appJar.toString());
    return command;
  }

  /** The JVM running this code, so the registry runs on the same Java as the caller. */
  private static String javaExecutable() {
    boolean windows = System.getProperty("os.name", "").toLowerCase().startsWith("windows");
    Path java = Path.of(System.getProperty("java.home"), "bin", windows ? "java.exe" : "java");
    if (Files.isExecutable(java)) {
      return java.toString();
    }
    return ProcessHandle.current()
        .info()
        .command()
        .orElseThrow(
            () ->
                new StackStartException(
                    "Schema registry: cannot find the java executable at " + java));
  }

  /**
   * Copies the child's output line by line to {@code logFile} on a daemon thread; the returned
   * future completes with the HTTP port from Quarkus's "Listening on:" line, or fails when the
   * output ends before that line. Once {@code stopping} is set (close, the shutdown hook), the
   * output closing under the reader is the expected end and is not reported: {@link
   * Process#isAlive()} cannot tell, it is often still true when the JDK closes the pipe.
   */
  static CompletableFuture<Integer> pumpOutput(
      Process process, Path logFile, AtomicBoolean stopping) {
    CompletableFuture<Integer> listening = new CompletableFuture<>();
    Thread.ofPlatform()
        .name("schema-registry-log")
        .daemon(true)
        .start(
            () -> {
              try (BufferedReader in =
                      new BufferedReader(
                          new InputStreamReader(process.getInputStream(), StandardCharsets.UTF_8));
                  BufferedWriter out =
                      Files.newBufferedWriter(
                          logFile,
                          StandardCharsets.UTF_8,
                          StandardOpenOption.CREATE,
                          StandardOpenOption.APPEND)) {
                String line;
                while ((line = in.readLine()) != null) {
                  out.write(line);
                  out.newLine();
                  out.flush();
                  if (!listening.isDone()) {
                    Matcher m = LISTENING.matcher(line);
                    if (m.find()) {
                      listening.complete(Integer.parseInt(m.group(1)));
                    }
                  }
                }
              } catch (IOException e) {
                listening.completeExceptionally(e);
                if (stopping.get()) {
                  LOG.debug(
                      "Schema registry output closed while stopping log={}: {}",
                      logFile,
                      e.toString());
                } else {
                  LOG.warn("Schema registry log copy failed log={}", logFile, e);
                }
              } finally {
                if (!listening.isDone()) {
                  listening.completeExceptionally(
                      new StackStartException(
                          "process exited before listening, exit " + exitCode(process)));
                }
              }
            });
    return listening;
  }

  private static String exitCode(Process process) {
    try {
      return process.waitFor(5, TimeUnit.SECONDS)
          ? String.valueOf(process.exitValue())
          : "unknown (still running)";
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      return "unknown (interrupted)";
    }
  }

  /** Polls {@code GET /subjects} until it answers 200: the REST layer and the storage are up. */
  private void awaitReady(long deadline) throws InterruptedException {
    HttpRequest request =
        HttpRequest.newBuilder(URI.create(url() + "/subjects"))
            .timeout(Duration.ofSeconds(5))
            .GET()
            .build();
    String last = "no answer";
    try (HttpClient http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(2)).build()) {
      while (System.nanoTime() < deadline) {
        if (!process.isAlive()) {
          throw new StackStartException("process exited, exit " + process.exitValue());
        }
        try {
          HttpResponse<String> response = http.send(request, HttpResponse.BodyHandlers.ofString());
          if (response.statusCode() == 200) {
            return;
          }
          last = "HTTP " + response.statusCode() + " " + response.body();
        } catch (IOException e) {
          last = e.toString();
        }
        Thread.sleep(100);
      }
    }
    throw new StackStartException("GET " + request.uri() + " never answered 200, last: " + last);
  }

  /** Base URL of the Confluent-compatible API, {@code http://127.0.0.1:<port>/apis/ccompat/v7}. */
  public String url() {
    return "http://127.0.0.1:" + port + CONFLUENT_API;
  }

  /** The HTTP port the registry listens on (loopback only). */
  public int port() {
    return port;
  }

  /** Process id of the registry JVM. */
  public long pid() {
    return process.pid();
  }

  /** The file the registry's output is copied to. */
  public Path logFile() {
    return logFile;
  }

  /**
   * Stops the registry process and its descendants: politely first, forcibly after a grace period.
   */
  @Override
  public void close() {
    if (!closed.compareAndSet(false, true)) {
      return;
    }
    long startNanos = System.nanoTime();
    destroyTree(process);
    removeHook(shutdownHook);
    LOG.info(
        "Schema registry stopped url={} exit={} stopMs={}",
        url(),
        process.isAlive() ? "still running" : process.exitValue(),
        TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - startNanos));
  }

  /**
   * The file in a storage directory naming the registry process that holds its database: pid and
   * start time, so that a registry left running by a JVM that was killed (SIGKILL, the kernel's OOM
   * killer: no shutdown hook runs) can be stopped by the next start instead of holding the H2 file
   * lock ("The file is locked: registry_db.mv.db") and failing it.
   */
  static final String PID_FILE_NAME = "registry.pid";

  static void writePidFile(Path storageDir, ProcessHandle process) throws IOException {
    String started =
        process.info().startInstant().map(i -> Long.toString(i.toEpochMilli())).orElse("-");
    Files.writeString(storageDir.resolve(PID_FILE_NAME), process.pid() + " " + started + "\n");
  }

  /**
   * Stops the registry a previous, killed JVM left running on {@code storageDir}, if its pid file
   * names a live process with the recorded start time (a reused pid is left alone); returns whether
   * one was stopped.
   */
  static boolean stopStale(Path storageDir) throws IOException {
    Path file = storageDir.resolve(PID_FILE_NAME);
    if (!Files.isRegularFile(file)) {
      return false;
    }
    String[] fields = Files.readString(file).trim().split("\\s+");
    Files.delete(file);
    if (fields.length != 2 || !fields[0].matches("\\d+")) {
      return false;
    }
    ProcessHandle stale = ProcessHandle.of(Long.parseLong(fields[0])).orElse(null);
    if (stale == null || !stale.isAlive()) {
      return false;
    }
    String started =
        stale.info().startInstant().map(i -> Long.toString(i.toEpochMilli())).orElse("-");
    if (!started.equals(fields[1])) {
      return false;
    }
    LOG.warn(
        "Schema registry pid={} left running by an earlier process holds {}: stopping it",
        stale.pid(),
        storageDir.toAbsolutePath());
    stale.descendants().forEach(ProcessHandle::destroy);
    stale.destroy();
    try {
      stale.onExit().get(STOP_TIMEOUT.toMillis(), TimeUnit.MILLISECONDS);
    } catch (TimeoutException e) {
      stale.destroyForcibly();
    } catch (ExecutionException e) {
      throw new IllegalStateException(e);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      stale.destroyForcibly();
    }
    return true;
  }

  static void destroyTree(Process process) {
    List<ProcessHandle> descendants = process.descendants().toList();
    descendants.forEach(ProcessHandle::destroy);
    process.destroy();
    try {
      if (!process.waitFor(STOP_TIMEOUT.toMillis(), TimeUnit.MILLISECONDS)) {
        LOG.warn(
            "Schema registry ignored SIGTERM for {}, killing pid={}", STOP_TIMEOUT, process.pid());
        process.destroyForcibly();
        process.waitFor(STOP_TIMEOUT.toMillis(), TimeUnit.MILLISECONDS);
      }
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      process.destroyForcibly();
    }
    descendants.stream().filter(ProcessHandle::isAlive).forEach(ProcessHandle::destroyForcibly);
  }

  private static void removeHook(Thread hook) {
    try {
      Runtime.getRuntime().removeShutdownHook(hook);
    } catch (IllegalStateException e) {
      // The JVM is already shutting down, and the hook runs (or ran) anyway.
      LOG.debug("Shutdown in progress, hook left in place", e);
    }
  }

  private static String logTail(Path logFile) {
    try {
      List<String> lines = Files.readAllLines(logFile, StandardCharsets.UTF_8);
      return String.join(
          "\n", lines.subList(Math.max(0, lines.size() - LOG_TAIL_LINES), lines.size()));
    } catch (IOException e) {
      return "(log unreadable: " + e + ")";
    }
  }
}
