package io.distillery.cli;

import ch.qos.logback.classic.Logger;
import ch.qos.logback.classic.LoggerContext;
import ch.qos.logback.classic.encoder.PatternLayoutEncoder;
import ch.qos.logback.classic.spi.ILoggingEvent;
import ch.qos.logback.core.Appender;
import ch.qos.logback.core.FileAppender;
import java.nio.file.Path;
import org.slf4j.LoggerFactory;

/**
 * Where {@code up} sends the platform's logs: a file under the run directory, so that the console
 * shows the runs and not a scrolling log; with {@code --verbose} the console keeps them too. Works
 * on the logback configuration of {@code logback.xml}, whose console appender is named {@value
 * #CONSOLE}.
 */
final class LogFile implements AutoCloseable {

  static final String CONSOLE = "STDERR";
  private static final String PATTERN =
      "%d{yyyy-MM-dd HH:mm:ss.SSS} %-5level [%thread] %logger{24} - %msg%n";

  private final Logger root;
  private final FileAppender<ILoggingEvent> file;
  private final Appender<ILoggingEvent> console;

  private LogFile(Logger root, FileAppender<ILoggingEvent> file, Appender<ILoggingEvent> console) {
    this.root = root;
    this.file = file;
    this.console = console;
  }

  /**
   * Appends every log event to {@code path} (its directory is created), and takes the console
   * appender off unless {@code keepConsole}. {@link #close()} puts things back as they were.
   */
  static LogFile redirect(Path path, boolean keepConsole) {
    LoggerContext context = (LoggerContext) LoggerFactory.getILoggerFactory();
    Logger root = context.getLogger(org.slf4j.Logger.ROOT_LOGGER_NAME);
    PatternLayoutEncoder encoder = new PatternLayoutEncoder();
    encoder.setContext(context);
    encoder.setPattern(PATTERN);
    encoder.start();
    FileAppender<ILoggingEvent> file = new FileAppender<>();
    file.setContext(context);
    file.setName("FILE");
    file.setFile(path.toAbsolutePath().toString());
    file.setAppend(true);
    file.setEncoder(encoder);
    file.start();
    if (!file.isStarted()) {
      throw new IllegalStateException("cannot write the log file " + path.toAbsolutePath());
    }
    root.addAppender(file);
    Appender<ILoggingEvent> console = keepConsole ? null : root.getAppender(CONSOLE);
    if (console != null) {
      root.detachAppender(console);
    }
    return new LogFile(root, file, console);
  }

  @Override
  public void close() {
    if (console != null && root.getAppender(CONSOLE) == null) {
      root.addAppender(console);
    }
    root.detachAppender(file);
    file.stop();
  }
}
