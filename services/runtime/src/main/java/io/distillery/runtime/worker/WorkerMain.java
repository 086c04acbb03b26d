package io.distillery.runtime.worker;

import io.distillery.runtime.config.Settings;
import io.distillery.stage.StageDescriptor;
import io.distillery.stage.StageRegistry;
import io.vertx.core.Vertx;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CountDownLatch;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Runs the stages found on the class path as worker services, one host per stage, until SIGTERM.
 * Which stages: {@code DISTILLERY_WORKER_STAGES} (comma-separated, default all) or the arguments.
 */
public final class WorkerMain {

  private static final Logger LOG = LoggerFactory.getLogger(WorkerMain.class);

  private WorkerMain() {}

  public static void main(String[] args) throws Exception {
    run(args, System.getenv(), new CountDownLatch(1));
  }

  /** The seam for tests: returns when {@code stop} is released (main: never, until SIGTERM). */
  public static void run(String[] args, Map<String, String> env, CountDownLatch stop)
      throws Exception {
    Settings settings = new Settings("worker", env);
    WorkerMemory memory = WorkerConfig.MEMORY.read(settings);
    WorkerConfig config = WorkerConfig.from(settings, memory);
    String wanted = args.length > 0 ? String.join(",", args) : settings.string("STAGES", "");
    LOG.info(
        "worker config: {} memory_budget={} heap_max={}",
        settings.describe(),
        memory,
        WorkerMemory.format(Runtime.getRuntime().maxMemory()));
    StageRegistry registry = StageRegistry.discover();
    List<StageDescriptor> stages =
        wanted.isBlank()
            ? List.copyOf(registry.all().values())
            : Arrays.stream(wanted.split(",")).map(String::trim).map(registry::get).toList();
    if (stages.isEmpty()) {
      throw new IllegalStateException(
          "no stages on the class path (META-INF/services/io.distillery.stage.Stage)");
    }
    Vertx vertx = Vertx.vertx();
    List<WorkerHost> hosts = new ArrayList<>();
    int port = config.httpPort();
    for (StageDescriptor d : stages) {
      hosts.add(WorkerHost.start(d, config.withHttpPort(port), vertx));
      port = port > 0 ? port + 1 : port;
    }
    Thread hook =
        new Thread(
            () -> {
              hosts.forEach(WorkerHost::close);
              vertx.close();
              stop.countDown();
            },
            "worker-shutdown");
    Runtime.getRuntime().addShutdownHook(hook);
    stop.await();
    try {
      Runtime.getRuntime().removeShutdownHook(hook);
      hosts.forEach(WorkerHost::close);
      vertx.close();
    } catch (IllegalStateException e) {
      // already shutting down: the hook closes the hosts
    }
  }
}
