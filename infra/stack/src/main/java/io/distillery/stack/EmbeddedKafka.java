package io.distillery.stack;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.PrintStream;
import java.io.UncheckedIOException;
import java.net.BindException;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.stream.Stream;
import kafka.server.KafkaConfig;
import kafka.server.KafkaRaftServer;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.common.Node;
import org.apache.kafka.common.Uuid;
import org.apache.kafka.common.utils.Time;
import org.apache.kafka.metadata.storage.Formatter;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * A real single-node Kafka 4.3 cluster in this JVM: one {@link KafkaRaftServer} that is both broker
 * and KRaft controller, listening on free loopback ports. It owns its data directory: formats it on
 * first start, reuses it on a restart (topics and records survive; the ports may change), and
 * deletes it on close when it created it as a temp directory.
 *
 * <p>The configuration is a production broker scaled down to one replica (internal topics,
 * including the transaction log Kafka Streams exactly-once needs, use replication factor 1 and min
 * ISR 1), tuned to start fast. Topics are <b>not</b> auto-created ({@code
 * auto.create.topics.enable=false}), as on a provisioned cluster: every service must create or
 * declare the topics it uses, so a missing topic fails here rather than only in production. Pass
 * {@code auto.create.topics.enable=true} in the overrides of {@link #start(Path, Map)} to change
 * that.
 */
public final class EmbeddedKafka implements AutoCloseable {

  private static final Logger LOG = LoggerFactory.getLogger(EmbeddedKafka.class);

  static final int NODE_ID = 1;
  static final String LOG_DIR_NAME = "kraft-combined-logs";
  private static final String CONTROLLER_LISTENER = "CONTROLLER";
  private static final String BROKER_LISTENER = "PLAINTEXT";
  private static final String LOOPBACK = "127.0.0.1";
  private static final Duration START_TIMEOUT = Duration.ofSeconds(60);
  private static final int BIND_ATTEMPTS = 3;

  private final KafkaRaftServer server;
  private final Path dataDir;
  private final boolean deleteOnClose;
  private final String bootstrapServers;
  private final String clusterId;
  private final AtomicBoolean closed = new AtomicBoolean();

  private EmbeddedKafka(
      KafkaRaftServer server,
      Path dataDir,
      boolean deleteOnClose,
      String bootstrapServers,
      String clusterId) {
    this.server = server;
    this.dataDir = dataDir;
    this.deleteOnClose = deleteOnClose;
    this.bootstrapServers = bootstrapServers;
    this.clusterId = clusterId;
  }

  /** Starts a broker on a new temp directory, deleted again by {@link #close()}. */
  public static EmbeddedKafka start() {
    Path dir;
    try {
      dir = Files.createTempDirectory("distillery-kafka-");
    } catch (IOException e) {
      throw new StackStartException("Kafka: cannot create a temp data directory", e);
    }
    try {
      return start(dir, Map.of(), true);
    } catch (RuntimeException e) {
      deleteRecursively(dir);
      throw e;
    }
  }

  /**
   * Starts a broker on {@code dataDir}, formatting it when empty and reusing it otherwise; it is
   * kept on close.
   */
  public static EmbeddedKafka start(Path dataDir) {
    return start(dataDir, Map.of());
  }

  /**
   * As {@link #start(Path)}, with broker properties that replace the defaults of this class (for
   * example {@code auto.create.topics.enable=true}). Listener, port and quorum properties should be
   * left alone.
   */
  public static EmbeddedKafka start(Path dataDir, Map<String, String> overrides) {
    return start(dataDir, overrides, false);
  }

  private static EmbeddedKafka start(
      Path dataDir, Map<String, String> overrides, boolean deleteOnClose) {
    long startNanos = System.nanoTime();
    Path logDir = dataDir.toAbsolutePath().resolve(LOG_DIR_NAME);
    String clusterId = formatIfNeeded(logDir);
    for (int attempt = 1; ; attempt++) {
      int[] ports = freeLoopbackPorts(2);
      String bootstrap = LOOPBACK + ":" + ports[0];
      Map<String, String> props = brokerConfig(logDir, ports[0], ports[1]);
      props.putAll(overrides);
      LOG.debug("Kafka config attempt={} {}", attempt, props);
      KafkaRaftServer server = new KafkaRaftServer(new KafkaConfig(props, false), Time.SYSTEM);
      try {
        server.startup();
        awaitBroker(bootstrap, startNanos);
      } catch (RuntimeException e) {
        stopQuietly(server, e);
        if (isBindFailure(e) && attempt < BIND_ATTEMPTS) {
          LOG.warn(
              "Kafka port taken between probe and bind, retrying attempt={} ports={}",
              attempt,
              ports);
          continue;
        }
        throw e instanceof StackStartException s
            ? s
            : new StackStartException("Kafka: broker failed to start on dataDir=" + dataDir, e);
      }
      LOG.info(
          "Kafka started bootstrapServers={} clusterId={} dataDir={} startMs={} overrides={}",
          bootstrap,
          clusterId,
          dataDir,
          TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - startNanos),
          overrides);
      return new EmbeddedKafka(server, dataDir, deleteOnClose, bootstrap, clusterId);
    }
  }

  /** {@code host:port} of the PLAINTEXT listener, for {@code bootstrap.servers}. */
  public String bootstrapServers() {
    return bootstrapServers;
  }

  /** The directory holding this broker's data (the KRaft log directory is a child of it). */
  public Path dataDir() {
    return dataDir;
  }

  /** The cluster id written when the data directory was formatted; unchanged across restarts. */
  public String clusterId() {
    return clusterId;
  }

  /**
   * Shuts broker and controller down, waits for them, and deletes the data directory if it was a
   * temp one.
   */
  @Override
  public void close() {
    if (!closed.compareAndSet(false, true)) {
      return;
    }
    long startNanos = System.nanoTime();
    try {
      server.shutdown();
      server.awaitShutdown();
    } finally {
      if (deleteOnClose) {
        deleteRecursively(dataDir);
      }
    }
    LOG.info(
        "Kafka stopped bootstrapServers={} stopMs={} dataDirDeleted={}",
        bootstrapServers,
        TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - startNanos),
        deleteOnClose);
  }

  static Map<String, String> brokerConfig(Path logDir, int brokerPort, int controllerPort) {
    Map<String, String> p = new LinkedHashMap<>();
    p.put("process.roles", "broker,controller");
    p.put("node.id", String.valueOf(NODE_ID));
    // A static quorum (kraft.version 0) stores voter ids, not addresses, so a restart may use other
    // ports.
    p.put("controller.quorum.voters", NODE_ID + "@" + LOOPBACK + ":" + controllerPort);
    p.put("controller.listener.names", CONTROLLER_LISTENER);
    p.put(
        "listeners",
        BROKER_LISTENER
            + "://"
            + LOOPBACK
            + ":"
            + brokerPort
            + ","
            + CONTROLLER_LISTENER
            + "://"
            + LOOPBACK
            + ":"
            + controllerPort);
    p.put("advertised.listeners", BROKER_LISTENER + "://" + LOOPBACK + ":" + brokerPort);
    p.put("inter.broker.listener.name", BROKER_LISTENER);
    p.put(
        "listener.security.protocol.map",
        BROKER_LISTENER + ":PLAINTEXT," + CONTROLLER_LISTENER + ":PLAINTEXT");
    p.put("log.dirs", logDir.toString());

    p.put("auto.create.topics.enable", "false");
    p.put("num.partitions", "3");
    p.put("default.replication.factor", "1");
    p.put("min.insync.replicas", "1");
    // Internal topics on one replica; fewer partitions than the default 50 keep the first
    // group/transaction fast.
    p.put("offsets.topic.replication.factor", "1");
    p.put("offsets.topic.num.partitions", "5");
    p.put("transaction.state.log.replication.factor", "1");
    p.put("transaction.state.log.min.isr", "1");
    p.put("transaction.state.log.num.partitions", "5");
    p.put("share.coordinator.state.topic.replication.factor", "1");
    p.put("share.coordinator.state.topic.min.isr", "1");
    p.put("share.coordinator.state.topic.num.partitions", "5");
    p.put("group.initial.rebalance.delay.ms", "0");

    // Start and shut down fast: the broker is unfenced after its first heartbeats.
    p.put("broker.heartbeat.interval.ms", "500");
    p.put("broker.session.timeout.ms", "6000");
    // Smaller thread pools and cleaner buffer than a production broker (the default buffer is 128
    // MiB).
    p.put("num.network.threads", "2");
    p.put("num.io.threads", "4");
    p.put("background.threads", "4");
    p.put("log.cleaner.dedupe.buffer.size", String.valueOf(8 * 1024 * 1024));
    return p;
  }

  /**
   * Formats {@code logDir} as a KRaft log directory unless it already is one; returns the cluster
   * id.
   */
  private static String formatIfNeeded(Path logDir) {
    Path metaProperties = logDir.resolve("meta.properties");
    if (Files.isRegularFile(metaProperties)) {
      String clusterId = readClusterId(metaProperties);
      LOG.info("Kafka reusing formatted logDir={} clusterId={}", logDir, clusterId);
      return clusterId;
    }
    String clusterId = Uuid.randomUuid().toString();
    format(logDir, NODE_ID, clusterId);
    return clusterId;
  }

  /**
   * Formats {@code logDir} as the KRaft log directory of node {@code nodeId} of cluster {@code
   * clusterId}.
   */
  static void format(Path logDir, int nodeId, String clusterId) {
    ByteArrayOutputStream output = new ByteArrayOutputStream();
    try {
      Files.createDirectories(logDir);
      new Formatter()
          .setPrintStream(new PrintStream(output, true, StandardCharsets.UTF_8))
          .setNodeId(nodeId)
          .setClusterId(clusterId)
          .setControllerListenerName(CONTROLLER_LISTENER)
          .setMetadataLogDirectory(logDir.toString())
          .setDirectories(List.of(logDir.toString()))
          .setHasDynamicQuorum(false)
          .run();
    } catch (Exception e) {
      throw new StackStartException(
          "Kafka: cannot format node "
              + nodeId
              + " logDir="
              + logDir
              + ": "
              + output.toString(StandardCharsets.UTF_8).strip(),
          e);
    }
    LOG.debug(
        "Kafka formatted logDir={} output={}",
        logDir,
        output.toString(StandardCharsets.UTF_8).strip());
  }

  private static String readClusterId(Path metaProperties) {
    Properties meta = new Properties();
    try (InputStream in = Files.newInputStream(metaProperties)) {
      meta.load(in);
    } catch (IOException e) {
      throw new StackStartException("Kafka: cannot read " + metaProperties, e);
    }
    String nodeId = meta.getProperty("node.id");
    if (!String.valueOf(NODE_ID).equals(nodeId)) {
      throw new StackStartException(
          "Kafka: "
              + metaProperties
              + " belongs to node.id="
              + nodeId
              + ", not to this single node "
              + NODE_ID);
    }
    return meta.getProperty("cluster.id");
  }

  /** Waits until the broker lists itself as an alive (unfenced) node to an Admin client. */
  private static void awaitBroker(String bootstrap, long startNanos) {
    long deadline = startNanos + START_TIMEOUT.toNanos();
    Map<String, Object> config =
        Map.of(
            AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap,
            AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, 5_000,
            AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, 10_000);
    Exception last = null;
    try (Admin admin = Admin.create(config)) {
      while (System.nanoTime() < deadline) {
        try {
          Collection<Node> nodes =
              admin
                  .describeCluster()
                  .nodes()
                  .get(deadline - System.nanoTime(), TimeUnit.NANOSECONDS);
          if (nodes.stream().anyMatch(n -> n.id() == NODE_ID)) {
            return;
          }
          Thread.sleep(50);
        } catch (ExecutionException | TimeoutException e) {
          last = e;
        } catch (InterruptedException e) {
          Thread.currentThread().interrupt();
          throw new StackStartException("Kafka: interrupted while waiting for the broker", e);
        }
      }
    }
    throw new StackStartException(
        "Kafka: broker at " + bootstrap + " did not answer describeCluster within " + START_TIMEOUT,
        last);
  }

  /**
   * Picks distinct free loopback ports by binding them all at once, then releasing them for the
   * broker.
   */
  static int[] freeLoopbackPorts(int count) {
    List<ServerSocket> sockets = new ArrayList<>();
    try {
      int[] ports = new int[count];
      for (int i = 0; i < count; i++) {
        ServerSocket socket = new ServerSocket(0, 1, InetAddress.getLoopbackAddress());
        sockets.add(socket);
        ports[i] = socket.getLocalPort();
      }
      return ports;
    } catch (IOException e) {
      throw new StackStartException("Kafka: no free loopback port", e);
    } finally {
      for (ServerSocket socket : sockets) {
        try {
          socket.close();
        } catch (IOException e) {
          LOG.debug("Closing port probe failed port={}", socket.getLocalPort(), e);
        }
      }
    }
  }

  private static boolean isBindFailure(Throwable e) {
    for (Throwable t = e; t != null; t = t.getCause()) {
      if (t instanceof BindException
          || (t.getMessage() != null && t.getMessage().contains("Address already in use"))) {
        return true;
      }
    }
    return false;
  }

  private static void stopQuietly(KafkaRaftServer server, RuntimeException failure) {
    try {
      server.shutdown();
      server.awaitShutdown();
    } catch (RuntimeException e) {
      failure.addSuppressed(e);
    }
  }

  static void deleteRecursively(Path dir) {
    if (!Files.exists(dir)) {
      return;
    }
    try (Stream<Path> paths = Files.walk(dir)) {
      for (Path p : paths.sorted(Comparator.reverseOrder()).toList()) {
        Files.deleteIfExists(p);
      }
    } catch (IOException e) {
      throw new UncheckedIOException("cannot delete " + dir, e);
    }
  }
}
