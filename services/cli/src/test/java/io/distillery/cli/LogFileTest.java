package io.distillery.cli;

import static org.assertj.core.api.Assertions.assertThat;

import ch.qos.logback.classic.Logger;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.slf4j.LoggerFactory;

/**
 * {@code up}'s logs: into the run directory's file, off the console unless verbose, and back on
 * close.
 */
class LogFileTest {

  @TempDir Path dir;
  final Logger root = (Logger) LoggerFactory.getLogger(org.slf4j.Logger.ROOT_LOGGER_NAME);

  @Test
  void shouldWriteTheLogsToTheFileAndTakeThemOffTheConsole() throws Exception {
    assertThat(root.getAppender(LogFile.CONSOLE)).isNotNull();
    Path file = dir.resolve("logs").resolve("distillery.log");

    try (LogFile ignored = LogFile.redirect(file, false)) {
      LoggerFactory.getLogger("io.distillery.planner.RunPlanner").info("run started runId=r1");
      assertThat(root.getAppender(LogFile.CONSOLE)).isNull();
    }

    assertThat(Files.readString(file)).contains("INFO").contains("run started runId=r1");
    assertThat(root.getAppender(LogFile.CONSOLE)).isNotNull();
  }

  @Test
  void shouldKeepTheConsoleWhenVerbose() throws Exception {
    Path file = dir.resolve("distillery.log");

    try (LogFile ignored = LogFile.redirect(file, true)) {
      LoggerFactory.getLogger("io.distillery.x").warn("both places");
      assertThat(root.getAppender(LogFile.CONSOLE)).isNotNull();
    }

    assertThat(Files.readString(file)).contains("both places");
  }
}
