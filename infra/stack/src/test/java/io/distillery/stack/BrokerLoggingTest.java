package io.distillery.stack;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.File;
import java.io.IOException;
import java.net.URISyntaxException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The embedded broker logs through SLF4J like the rest of Distillery: starting it prints no Log4j 2
 * status error. Part of the broker (kafka-server's LoggingController, initialised at startup) logs
 * through the Log4j 2 API; with no implementation on the class path the API prints "ERROR
 * StatusLogger Log4j2 could not find a logging implementation" to stderr, and with log4j-core it
 * logs beside logback. The broker starts in a fresh JVM, so that Log4j initialises there whatever
 * this JVM's other tests did, and its console is read whole.
 */
class BrokerLoggingTest {

  @TempDir Path tempDir;

  @Test
  void shouldStartBrokerWithoutLog4jStatusErrorWhenLoggingThroughSlf4j() throws Exception {
    Path console = tempDir.resolve("console.txt");
    Process broker =
        new ProcessBuilder(
                List.of(
                    Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                    "-cp",
                    userClassPath(),
                    Probe.class.getName(),
                    tempDir.resolve("kafka").toString()))
            .redirectErrorStream(true)
            .redirectOutput(console.toFile())
            .start();
    boolean exited = broker.waitFor(120, TimeUnit.SECONDS);
    if (!exited) {
      broker.destroyForcibly();
    }
    String out = Files.readString(console, StandardCharsets.UTF_8);

    assertThat(exited).as("the broker probe exited within 120 s; its console:%n%s", out).isTrue();
    assertThat(broker.exitValue()).as("probe exit status; its console:%n%s", out).isZero();
    assertThat(out).contains(Probe.STARTED).doesNotContain("StatusLogger");
    assertThat(out)
        .as("the Log4j 2 API hands the broker's lines to SLF4J")
        .contains(Probe.FACTORY + "org.apache.logging.slf4j.SLF4JLoggerContextFactory");
  }

  /**
   * The class path a user of this module runs with: its classes and its compile and runtime
   * dependencies (as Maven wrote them for this test), an SLF4J binding (logback, as the CLI and the
   * benchmarks add it), and the probe. Not this JVM's test class path: test-scoped jars on it (the
   * Vert.x BOM scopes log4j-core to test) would hide what a user's JVM prints.
   */
  static String userClassPath() throws IOException {
    String file = System.getProperty("distillery.stack.runtime.classpath");
    if (file == null) {
      throw new IllegalStateException(
          "system property distillery.stack.runtime.classpath is not set (run through Maven)");
    }
    List<String> parts = new ArrayList<>();
    parts.add(codeSource(EmbeddedKafka.class));
    parts.add(Files.readString(Path.of(file), StandardCharsets.UTF_8).strip());
    for (String entry : System.getProperty("java.class.path").split(File.pathSeparator)) {
      if (Path.of(entry).getFileName().toString().startsWith("logback-")) {
        parts.add(entry);
      }
    }
    parts.add(codeSource(Probe.class));
    return String.join(File.pathSeparator, parts);
  }

  private static String codeSource(Class<?> c) {
    try {
      return Path.of(c.getProtectionDomain().getCodeSource().getLocation().toURI()).toString();
    } catch (URISyntaxException e) {
      throw new IllegalStateException(e);
    }
  }

  /** Starts and stops the embedded broker in its own JVM. */
  public static final class Probe {
    static final String STARTED = "probe: broker started at ";
    static final String FACTORY = "probe: log4j context factory ";

    public static void main(String[] args) throws IOException, ReflectiveOperationException {
      try (EmbeddedKafka kafka = EmbeddedKafka.start(Path.of(args[0]))) {
        System.out.println(STARTED + kafka.bootstrapServers());
      }
      // read reflectively: the Log4j 2 API is the broker's dependency, not one this module codes to
      Object factory =
          Class.forName("org.apache.logging.log4j.LogManager").getMethod("getFactory").invoke(null);
      System.out.println(FACTORY + factory.getClass().getName());
      System.out.flush();
      System.exit(0);
    }
  }
}
