package io.distillery.stack;

import static org.assertj.core.api.Assertions.assertThat;

import ch.qos.logback.classic.Level;
import ch.qos.logback.classic.Logger;
import ch.qos.logback.classic.spi.ILoggingEvent;
import ch.qos.logback.core.read.ListAppender;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.slf4j.LoggerFactory;

/**
 * The registry's output pump on a stand-in child that writes without pause: stopping the child on
 * purpose closes its output under the reader, which is the normal end of a run and must log nothing
 * at WARN (it logged a stack trace on every clean shutdown of {@code up} and the benches).
 */
class OutputPumpTest {

  @TempDir Path dir;
  final ListAppender<ILoggingEvent> logged = new ListAppender<>();
  final Logger logger = (Logger) LoggerFactory.getLogger(SchemaRegistryProcess.class);

  @BeforeEach
  void capture() {
    logged.start();
    logger.addAppender(logged);
  }

  @AfterEach
  void release() {
    logger.detachAppender(logged);
  }

  @Test
  void shouldLogNothingAtWarnWhenTheChildIsStoppedOnPurpose() throws Exception {
    for (int round = 0;
        round < 10;
        round++) { // the reader sees either EOF or a closed stream; both must be quiet
      Process child =
          new ProcessBuilder(
                  "bash",
                  "-c",
                  "trap 'exit 0' TERM; echo 'Listening on: http://127.0.0.1:4321'; while true; do echo line; sleep 0.001; done")
              .redirectErrorStream(true)
              .start();
      AtomicBoolean stopping = new AtomicBoolean();
      Path log = dir.resolve("child-" + round + ".log");
      CompletableFuture<Integer> listening = SchemaRegistryProcess.pumpOutput(child, log, stopping);
      assertThat(listening.get(10, TimeUnit.SECONDS)).isEqualTo(4321);
      Thread.sleep(200);

      stopping.set(true);
      SchemaRegistryProcess.destroyTree(child);
      assertThat(child.isAlive()).isFalse();
      Thread.sleep(200); // the pump's last read

      assertThat(Files.readAllLines(log)).first().asString().startsWith("Listening on:");
    }
    assertThat(logged.list).filteredOn(e -> e.getLevel().isGreaterOrEqual(Level.WARN)).isEmpty();
  }
}
