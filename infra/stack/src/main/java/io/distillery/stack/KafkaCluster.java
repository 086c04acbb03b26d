package io.distillery.stack;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.stream.Collectors;
import java.util.stream.IntStream;
import kafka.server.KafkaConfig;
import kafka.server.KafkaRaftServer;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.common.Node;
import org.apache.kafka.common.Uuid;
import org.apache.kafka.common.utils.Time;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * A real N-node Kafka cluster in this JVM, for fault tests: every node is broker and KRaft
 * controller (a static quorum of all nodes, so it survives the loss of a minority), on free
 * loopback ports under one temp directory that {@link #close()} deletes. Topics default to
 * replication factor N and {@code min.insync.replicas} as given, and so do the internal topics
 * (offsets, transactions), as on a provisioned production cluster.
 *
 * <p>{@link #stopNode(int)} takes one node away as a crash would look to the others: no controlled
 * shutdown, so its partitions stay led by it until the controller fences it after the broker
 * session timeout. The one-broker {@link EmbeddedKafka} stays the stack of {@code distillery up};
 * this class exists for the tests that need more.
 */
public final class KafkaCluster implements AutoCloseable {

  private static final Logger LOG = LoggerFactory.getLogger(KafkaCluster.class);
  private static final String CONTROLLER_LISTENER = "CONTROLLER";
  private static final String LOOPBACK = "127.0.0.1";
  private static final Duration START_TIMEOUT = Duration.ofSeconds(90);
  private static final Duration STOP_TIMEOUT = Duration.ofSeconds(30);

  private final Path dataDir;
  private final Map<Integer, KafkaRaftServer> servers;
  private final Map<Integer, String> brokerAddresses;
  private final Set<Integer> stopped = ConcurrentHashMap.newKeySet();
  private final int minInsyncReplicas;
  private final AtomicBoolean closed = new AtomicBoolean();

  private KafkaCluster(
      Path dataDir,
      Map<Integer, KafkaRaftServer> servers,
      Map<Integer, String> brokerAddresses,
      int minInsyncReplicas) {
    this.dataDir = dataDir;
    this.servers = servers;
    this.brokerAddresses = brokerAddresses;
    this.minInsyncReplicas = minInsyncReplicas;
  }

  /**
   * Starts {@code nodes} nodes (ids 1..nodes) on a new temp directory. Topics created without a
   * replication factor get {@code nodes} replicas; {@code minInsyncReplicas} is the broker default
   * for every topic.
   */
  public static KafkaCluster start(int nodes, int minInsyncReplicas) {
    if (nodes < 1) {
      throw new IllegalArgumentException("a cluster needs at least one node, was " + nodes);
    }
    if (minInsyncReplicas < 1 || minInsyncReplicas > nodes) {
      throw new IllegalArgumentException(
          "min.insync.replicas must be between 1 and the node count "
              + nodes
              + ", was "
              + minInsyncReplicas);
    }
    long startNanos = System.nanoTime();
    Path dir;
    try {
      dir = Files.createTempDirectory("distillery-kafka-cluster-");
    } catch (IOException e) {
      throw new StackStartException("Kafka cluster: cannot create a temp data directory", e);
    }
    int[] ports = EmbeddedKafka.freeLoopbackPorts(2 * nodes);
    String voters =
        IntStream.rangeClosed(1, nodes)
            .mapToObj(id -> id + "@" + LOOPBACK + ":" + ports[2 * (id - 1) + 1])
            .collect(Collectors.joining(","));
    String clusterId = Uuid.randomUuid().toString();
    Map<Integer, KafkaRaftServer> servers = new LinkedHashMap<>();
    Map<Integer, String> addresses = new LinkedHashMap<>();
    try {
      for (int id = 1; id <= nodes; id++) {
        Path logDir = dir.resolve("node-" + id).resolve(EmbeddedKafka.LOG_DIR_NAME);
        EmbeddedKafka.format(logDir, id, clusterId);
        Map<String, String> props =
            nodeConfig(
                logDir,
                id,
                ports[2 * (id - 1)],
                ports[2 * (id - 1) + 1],
                voters,
                nodes,
                minInsyncReplicas);
        servers.put(id, new KafkaRaftServer(new KafkaConfig(props, false), Time.SYSTEM));
        addresses.put(id, LOOPBACK + ":" + ports[2 * (id - 1)]);
      }
      // In parallel: a node's broker waits for the metadata quorum, which needs a majority of the
      // nodes up.
      List<CompletableFuture<Void>> starts =
          servers.values().stream()
              .map(
                  s ->
                      CompletableFuture.runAsync(
                          s::startup, r -> Thread.ofPlatform().daemon(true).start(r)))
              .toList();
      CompletableFuture.allOf(starts.toArray(CompletableFuture[]::new))
          .get(START_TIMEOUT.toSeconds(), TimeUnit.SECONDS);
      awaitBrokers(String.join(",", addresses.values()), servers.keySet(), startNanos);
    } catch (ExecutionException | TimeoutException | InterruptedException | RuntimeException e) {
      if (e instanceof InterruptedException) {
        Thread.currentThread().interrupt();
      }
      servers.values().forEach(KafkaCluster::stopQuietly);
      EmbeddedKafka.deleteRecursively(dir);
      Throwable cause = e instanceof ExecutionException ? e.getCause() : e;
      throw cause instanceof StackStartException s
          ? s
          : new StackStartException(
              "Kafka cluster of " + nodes + " nodes failed to start: " + cause, cause);
    }
    KafkaCluster cluster = new KafkaCluster(dir, servers, addresses, minInsyncReplicas);
    LOG.info(
        "Kafka cluster started nodes={} bootstrapServers={} clusterId={} minInsyncReplicas={} startMs={}",
        nodes,
        cluster.bootstrapServers(),
        clusterId,
        minInsyncReplicas,
        TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - startNanos));
    return cluster;
  }

  /**
   * {@code host:port} of every node's broker listener, stopped ones included (clients skip those).
   */
  public String bootstrapServers() {
    return String.join(",", brokerAddresses.values());
  }

  /** The node ids, 1..N. */
  public Set<Integer> nodeIds() {
    return brokerAddresses.keySet();
  }

  /** The replication factor of topics created with the broker default: the node count. */
  public int replicationFactor() {
    return servers.size();
  }

  public int minInsyncReplicas() {
    return minInsyncReplicas;
  }

  /** The broker address of node {@code nodeId}. */
  public String brokerAddress(int nodeId) {
    String address = brokerAddresses.get(nodeId);
    if (address == null) {
      throw new IllegalArgumentException("no node " + nodeId + " in " + nodeIds());
    }
    return address;
  }

  /**
   * Stops node {@code nodeId} (broker and controller) without a controlled shutdown and waits until
   * it is down; the cluster notices when its session times out. Its data stays until {@link
   * #close()}.
   */
  public void stopNode(int nodeId) {
    KafkaRaftServer server = servers.get(nodeId);
    if (server == null) {
      throw new IllegalArgumentException("no node " + nodeId + " in " + nodeIds());
    }
    if (!stopped.add(nodeId)) {
      return;
    }
    long startNanos = System.nanoTime();
    server.shutdown();
    server.awaitShutdown();
    LOG.info(
        "Kafka node stopped nodeId={} address={} stopMs={}",
        nodeId,
        brokerAddresses.get(nodeId),
        TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - startNanos));
  }

  /**
   * Stops the nodes still running, all at once (one left alone would wait for a quorum), and
   * deletes the data.
   */
  @Override
  public void close() {
    if (!closed.compareAndSet(false, true)) {
      return;
    }
    try {
      List<CompletableFuture<Void>> stops = new ArrayList<>();
      servers.forEach(
          (id, server) -> {
            if (stopped.add(id)) {
              stops.add(
                  CompletableFuture.runAsync(
                      () -> stopQuietly(server), r -> Thread.ofPlatform().daemon(true).start(r)));
            }
          });
      CompletableFuture.allOf(stops.toArray(CompletableFuture[]::new))
          .get(STOP_TIMEOUT.toSeconds() * 2, TimeUnit.SECONDS);
    } catch (ExecutionException | TimeoutException e) {
      LOG.warn(
          "Kafka cluster did not stop cleanly within {}: {}",
          STOP_TIMEOUT.multipliedBy(2),
          e.toString());
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    } finally {
      EmbeddedKafka.deleteRecursively(dataDir);
    }
    LOG.info("Kafka cluster stopped bootstrapServers={}", bootstrapServers());
  }

  static Map<String, String> nodeConfig(
      Path logDir,
      int nodeId,
      int brokerPort,
      int controllerPort,
      String voters,
      int nodes,
      int minInsyncReplicas) {
    Map<String, String> p = EmbeddedKafka.brokerConfig(logDir, brokerPort, controllerPort);
    p.put("node.id", String.valueOf(nodeId));
    p.put("controller.quorum.voters", voters);
    String replication = String.valueOf(nodes);
    String minIsr = String.valueOf(minInsyncReplicas);
    p.put("default.replication.factor", replication);
    p.put("min.insync.replicas", minIsr);
    p.put("offsets.topic.replication.factor", replication);
    p.put("transaction.state.log.replication.factor", replication);
    p.put("transaction.state.log.min.isr", minIsr);
    p.put("share.coordinator.state.topic.replication.factor", replication);
    p.put("share.coordinator.state.topic.min.isr", minIsr);
    // A lost node is a crash, not a polite leave: its leaderships move only when the controller
    // fences it.
    p.put("controlled.shutdown.enable", "false");
    // Unclean leader election would lose acknowledged records; the default (false) is what the
    // fault test relies on.
    p.put("unclean.leader.election.enable", "false");
    return p;
  }

  /** Waits until every node is listed as an alive broker. */
  private static void awaitBrokers(String bootstrap, Collection<Integer> ids, long startNanos) {
    long deadline = startNanos + START_TIMEOUT.toNanos();
    Map<String, Object> config =
        Map.of(
            AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap,
            AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, 5_000,
            AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, 10_000);
    Exception last = null;
    Collection<Node> nodes = List.of();
    try (Admin admin = Admin.create(config)) {
      while (System.nanoTime() < deadline) {
        try {
          nodes =
              admin
                  .describeCluster()
                  .nodes()
                  .get(deadline - System.nanoTime(), TimeUnit.NANOSECONDS);
          if (nodes.stream().map(Node::id).collect(Collectors.toSet()).containsAll(ids)) {
            return;
          }
          Thread.sleep(100);
        } catch (ExecutionException | TimeoutException e) {
          last = e;
        } catch (InterruptedException e) {
          Thread.currentThread().interrupt();
          throw new StackStartException(
              "Kafka cluster: interrupted while waiting for the brokers", e);
        }
      }
    }
    throw new StackStartException(
        "Kafka cluster at "
            + bootstrap
            + ": brokers "
            + ids
            + " not all alive within "
            + START_TIMEOUT
            + ", last saw "
            + nodes,
        last);
  }

  private static void stopQuietly(KafkaRaftServer server) {
    try {
      server.shutdown();
      server.awaitShutdown();
    } catch (RuntimeException e) {
      LOG.warn("Kafka node shutdown failed: {}", e.toString());
    }
  }
}
