package io.distillery.bench;

import com.sun.management.OperatingSystemMXBean;
import io.distillery.planner.PlannerApp;
import io.distillery.planner.PlannerConfig;
import io.distillery.planner.PlannerService;
import io.distillery.runtime.artefact.FileArtefactStore;
import io.distillery.runtime.kafka.KafkaSettings;
import io.distillery.runtime.kafka.TopicAdmin;
import io.distillery.runtime.kafka.Topics;
import io.distillery.runtime.worker.WorkerConfig;
import io.distillery.runtime.worker.WorkerHost;
import io.distillery.schemas.common.ArtefactRef;
import io.distillery.schemas.job.Completed;
import io.distillery.schemas.job.JobEvent;
import io.distillery.schemas.job.StageJob;
import io.distillery.schemas.job.Started;
import io.distillery.schemas.model.ModelRegistered;
import io.distillery.schemas.run.RunState;
import io.distillery.schemas.run.RunStatus;
import io.distillery.stack.LocalStack;
import io.distillery.stage.StageRegistry;
import java.lang.management.ManagementFactory;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.HashMap;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.UUID;
import java.util.concurrent.locks.LockSupport;
import java.util.function.Consumer;
import javax.management.MBeanServer;
import javax.management.ObjectName;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * bench/dispatch: N concurrent runs of a 3-stage no-op recipe through one planner on the embedded
 * broker. Measures runs/s, the latency from a stage's Completed to the next stage's Started
 * (planner + two Kafka hops + worker queueing), the planner's own share (Completed to the job's
 * dispatch), and, as the baseline in the same run, the plain produce-to-consume latency of one
 * Kafka hop on the same broker.
 */
public final class DispatchBench {

  static final String RECIPE =
      """
      name: noop3
      stages:
        a: { stage: noop-a }
        b: { stage: noop-b, after: [a] }
        c: { stage: noop-c, after: [b] }
      """;

  /**
   * Runs before the measured batch, so that it measures JIT-compiled code rather than the compilers
   * (after 300 the compilers still took about half a core).
   */
  static final int WARMUP_RUNS = Integer.getInteger("dispatch.warmup", 1500);

  /**
   * Seconds of measured idleness between warm-up and the measured batch (also lets the JIT
   * compilers finish).
   */
  static final int IDLE_SECONDS = Integer.getInteger("dispatch.idle", 10);

  /**
   * With {@code -Ddispatch.breakdown=true}, an extra consumer watches the job events and the next
   * stages' job topics during the measured batch and the e2e latency is split where it is spent
   * (off by default: the watcher is one more consumer on the same two cores).
   */
  static final boolean BREAKDOWN = Boolean.getBoolean("dispatch.breakdown");

  public static void main(String[] args) throws Exception {
    int runs = args.length > 0 ? Integer.parseInt(args[0]) : 1000;
    int workersPerStage = args.length > 1 ? Integer.parseInt(args[1]) : 1;
    double rate =
        args.length > 2
            ? Double.parseDouble(args[2])
            : 0; // registrations per second; 0 = all at once
    int maxWaitingJobs =
        args.length > 3 ? Integer.parseInt(args[3]) : PlannerService.LOCAL_MAX_WAITING_JOBS;
    Path dir = Files.createDirectories(Path.of("bench", "target", "dispatch-" + UUID.randomUUID()));
    try (LocalStack stack = LocalStack.start(dir.toAbsolutePath())) {
      KafkaSettings kafka = KafkaSettings.of(stack.bootstrapServers(), stack.registryUrl());
      try (TopicAdmin admin = new TopicAdmin(kafka)) {
        admin.ensurePlatformTopics();
      }
      Percentiles hop = kafkaHop(kafka, 2000);
      System.out.printf(
          Locale.ROOT,
          "baseline: one Kafka hop (produce -> consume) p50=%.1f ms p99=%.1f ms (n=%d)%n",
          hop.p50(),
          hop.p99(),
          hop.n());

      Path store = dir.resolve("store").toAbsolutePath();
      List<WorkerHost> workers = new ArrayList<>();
      for (String stage : List.of("noop-a", "noop-b", "noop-c")) {
        for (int i = 0; i < workersPerStage; i++) {
          workers.add(
              WorkerHost.start(
                  StageRegistry.discover().get(stage),
                  WorkerConfig.of(stack.bootstrapServers(), stack.registryUrl(), store)
                      .withWorkerId(stage + "-" + i)));
        }
      }
      try (PlannerApp planner =
          PlannerApp.start(
                  PlannerConfig.of(
                          stack.bootstrapServers(), stack.registryUrl(), dir.resolve("planner"))
                      .withMaxWaitingJobs(maxWaitingJobs))
              .awaitRunning(Duration.ofSeconds(90))) {
        Path model = Files.createDirectories(dir.resolve("model"));
        Files.writeString(model.resolve("config.json"), "{}");
        ArtefactRef ref = new FileArtefactStore(store).put(model, "hf-model", true);

        runBatch(kafka, ref, WARMUP_RUNS, 0); // warm-up: JIT, topic metadata, group joins
        long idle0 = processCpuNanos();
        Thread.sleep(IDLE_SECONDS * 1000L);
        System.out.printf(
            Locale.ROOT,
            "idle: %.3f cores busy over %d s with no runs (JIT compilers finishing, consumer"
                + " polls, broker housekeeping)%n",
            (processCpuNanos() - idle0) / 1e9 / IDLE_SECONDS,
            IDLE_SECONDS);
        Observer observer =
            BREAKDOWN
                ? new Observer(
                    kafka, List.of(Topics.JOB_EVENTS, Topics.jobs("noop-b"), Topics.jobs("noop-c")))
                : null;
        long cpu0 = processCpuNanos();
        long t0 = System.nanoTime();
        Map<String, Long> registered = runBatch(kafka, ref, runs, rate);
        List<String> ids = List.copyOf(registered.keySet());
        double seconds = (System.nanoTime() - t0) / 1e9;
        double cpuMsPerRun = (processCpuNanos() - cpu0) / 1e6 / runs;
        Map<String, RunStatus> finals = finals(kafka, new HashSet<>(ids));
        long lost = ids.stream().filter(id -> finals.get(id) != RunStatus.SUCCEEDED).count();

        Latencies lat = latencies(kafka, registered);
        if (observer != null) {
          observer.close();
          breakdown(kafka, registered.keySet(), observer.seen());
          streamThreadMetrics();
        }
        Percentiles e2e = Percentiles.of(lat.completedToStarted());
        Percentiles planned = Percentiles.of(lat.completedToDispatched());
        Percentiles admission = Percentiles.of(lat.registeredToStarted());
        System.out.printf(
            Locale.ROOT,
            "runs=%d stages/run=3 workers/stage=%d arrival=%s max_waiting_jobs=%d wall=%.2f s%n",
            runs,
            workersPerStage,
            rate > 0 ? rate + " runs/s" : "all at once",
            maxWaitingJobs,
            seconds);
        System.out.printf(
            Locale.ROOT,
            "cpu: %.2f ms per run (broker, planner, workers and the benchmark's readers in"
                + " this process; the registry is a child process, idle once schemas are cached; %d cores)%n",
            cpuMsPerRun,
            Runtime.getRuntime().availableProcessors());
        System.out.printf(
            Locale.ROOT,
            "completed -> next started: p50=%.1f ms p99=%.1f ms max=%.0f ms (n=%d)%n",
            e2e.p50(),
            e2e.p99(),
            e2e.max(),
            e2e.n());
        System.out.printf(
            Locale.ROOT,
            "completed -> dispatched (planner only): p50=%.1f ms p99=%.1f ms (n=%d)%n",
            planned.p50(),
            planned.p99(),
            planned.n());
        System.out.printf(
            Locale.ROOT,
            "registered -> first stage started (includes time queued for admission):"
                + " p50=%.1f ms p99=%.1f ms max=%.0f ms (n=%d)%n",
            admission.p50(),
            admission.p99(),
            admission.max(),
            admission.n());
        System.out.printf(
            Locale.ROOT,
            "ratio to baseline: e2e p99 / (2 x hop p99) = %.2f; planner p99 / hop p99 = %.2f%n",
            e2e.p99() / (2 * Math.max(1, hop.p99())),
            planned.p99() / Math.max(1, hop.p99()));
        System.out.printf(
            Locale.ROOT,
            "dispatch runs=%d runs_per_s=%.1f p50_ms=%.1f p99_ms=%.1f planner_p99_ms=%.1f hop_p99_ms=%.1f"
                + " start_p99_ms=%.1f cpu_ms_per_run=%.2f lost=%d%n",
            runs,
            runs / seconds,
            e2e.p50(),
            e2e.p99(),
            planned.p99(),
            hop.p99(),
            admission.p99(),
            cpuMsPerRun,
            lost);
      } finally {
        workers.forEach(w -> w.close(Duration.ofSeconds(2)));
      }
    }
    System.exit(0);
  }

  /** CPU time of this whole process (the stack, the workers and the planner all run in it). */
  static long processCpuNanos() {
    return ((OperatingSystemMXBean) ManagementFactory.getOperatingSystemMXBean())
        .getProcessCpuTime();
  }

  /**
   * Registers {@code n} runs (all at once, or {@code rate} per second), waits until every one has
   * finished, and returns their ids with the wall-clock millisecond each was registered at.
   */
  static Map<String, Long> runBatch(KafkaSettings kafka, ArtefactRef model, int n, double rate)
      throws Exception {
    Map<String, Long> ids = new LinkedHashMap<>();
    try (var p =
        new KafkaProducer<>(
            kafka.producer("bench"), new StringSerializer(), kafka.serde(ModelRegistered.class))) {
      long start = System.nanoTime();
      for (int i = 0; i < n; i++) {
        if (rate > 0) {
          long due = start + (long) (i * 1e9 / rate);
          LockSupport.parkNanos(due - System.nanoTime());
        }
        String id = UUID.randomUUID().toString();
        Instant now = Instant.now();
        ids.put(id, now.toEpochMilli());
        p.send(
            new ProducerRecord<>(
                Topics.MODELS_REGISTERED,
                "bench-" + i,
                ModelRegistered.newBuilder()
                    .setRunId(id)
                    .setModelId("bench-" + i)
                    .setUri(model.getUri())
                    .setSha256(model.getSha256())
                    .setBytes(model.getBytes())
                    .setRecipe(RECIPE)
                    .setRegisteredAt(now)
                    .build()));
      }
      p.flush();
    }
    awaitFinished(kafka, ids.keySet(), Duration.ofMinutes(10));
    return ids;
  }

  static void awaitFinished(KafkaSettings kafka, Set<String> ids, Duration timeout) {
    Set<String> pending = new HashSet<>(ids);
    var serde = kafka.serde(RunState.class);
    long deadline = System.nanoTime() + timeout.toNanos();
    try (KafkaConsumer<String, byte[]> c = assigned(kafka, Topics.RUNS)) {
      while (!pending.isEmpty() && System.nanoTime() < deadline) {
        for (ConsumerRecord<String, byte[]> r : c.poll(Duration.ofMillis(100))) {
          if (pending.contains(r.key())
              && serde.deserialize(r.topic(), r.value()).getStatus() != RunStatus.RUNNING) {
            pending.remove(r.key());
          }
        }
      }
    }
    if (!pending.isEmpty()) {
      System.out.println("warning: " + pending.size() + " run(s) did not finish within " + timeout);
    }
  }

  static Map<String, RunStatus> finals(KafkaSettings kafka, Set<String> ids) {
    Map<String, RunStatus> out = new HashMap<>();
    var serde = kafka.serde(RunState.class);
    readAll(
        kafka,
        Topics.RUNS,
        r -> {
          if (ids.contains(r.key())) {
            out.put(r.key(), serde.deserialize(r.topic(), r.value()).getStatus());
          }
        });
    return out;
  }

  record Latencies(
      long[] completedToStarted, long[] completedToDispatched, long[] registeredToStarted) {}

  static Latencies latencies(KafkaSettings kafka, Map<String, Long> registered) {
    Set<String> ids = registered.keySet();
    var events = kafka.serde(JobEvent.class);
    var jobs = kafka.serde(StageJob.class);
    Map<String, Long> completed = new HashMap<>();
    Map<String, Long> started = new HashMap<>();
    Map<String, Long> dispatched = new HashMap<>();
    readAll(
        kafka,
        Topics.JOB_EVENTS,
        r -> {
          if (!ids.contains(r.key())) {
            return;
          }
          JobEvent e = events.deserialize(r.topic(), r.value());
          String k = e.getRunId() + "/" + e.getNode();
          if (e.getPayload() instanceof Completed) {
            completed.putIfAbsent(k, e.getTs().toEpochMilli());
          } else if (e.getPayload() instanceof Started) {
            started.putIfAbsent(k, e.getTs().toEpochMilli());
          }
        });
    for (String stage : List.of("noop-b", "noop-c")) {
      readAll(
          kafka,
          Topics.jobs(stage),
          r -> {
            if (ids.contains(r.key())) {
              StageJob j = jobs.deserialize(r.topic(), r.value());
              dispatched.putIfAbsent(
                  j.getRunId() + "/" + j.getNode(), j.getDispatchedAt().toEpochMilli());
            }
          });
    }
    List<Long> e2e = new ArrayList<>();
    List<Long> planner = new ArrayList<>();
    List<Long> admitted = new ArrayList<>();
    for (String id : ids) {
      Long first = started.get(id + "/a");
      if (first != null) {
        admitted.add(first - registered.get(id));
      }
      for (String[] edge : new String[][] {{"a", "b"}, {"b", "c"}}) {
        Long done = completed.get(id + "/" + edge[0]);
        Long next = started.get(id + "/" + edge[1]);
        Long disp = dispatched.get(id + "/" + edge[1]);
        if (done != null && next != null) {
          e2e.add(next - done);
        }
        if (done != null && disp != null) {
          planner.add(disp - done);
        }
      }
    }
    return new Latencies(
        e2e.stream().mapToLong(Long::longValue).toArray(),
        planner.stream().mapToLong(Long::longValue).toArray(),
        admitted.stream().mapToLong(Long::longValue).toArray());
  }

  /**
   * Splits each completed -> next started latency into: hop 1 (Completed written -> seen by an idle
   * consumer), planner wait (seen -> the planner starts processing it: its stream thread busy with
   * other records, a commit or a poll), planner out (processing start -> the job seen by an idle
   * consumer: the planner's work, its writes and hop 2) and worker (job seen -> Started written),
   * with the part of it spent waiting for the worker's previous job to complete.
   */
  static void breakdown(KafkaSettings kafka, Set<String> ids, List<Observer.Seen> seen) {
    var events = kafka.serde(JobEvent.class);
    var jobs = kafka.serde(StageJob.class);
    Map<String, Long> completedAt = new HashMap<>();
    Map<String, Long> completedSeen = new HashMap<>();
    Map<String, Long> startedAt = new HashMap<>();
    Map<String, Long> dispatchedAt = new HashMap<>();
    Map<String, Long> jobSeen = new HashMap<>();
    Map<String, List<Long>> doneByWorker = new HashMap<>();
    Map<String, String> workerOf = new HashMap<>();
    for (Observer.Seen s : seen) {
      if (s.topic().equals(Topics.JOB_EVENTS)) {
        JobEvent e = events.deserialize(s.topic(), s.value());
        if (!ids.contains(e.getRunId())) {
          continue;
        }
        String k = e.getRunId() + "/" + e.getNode();
        if (e.getPayload() instanceof Completed) {
          completedAt.putIfAbsent(k, e.getTs().toEpochMilli());
          completedSeen.putIfAbsent(k, s.atMs());
          doneByWorker
              .computeIfAbsent(e.getWorker(), w -> new ArrayList<>())
              .add(e.getTs().toEpochMilli());
        } else if (e.getPayload() instanceof Started) {
          startedAt.putIfAbsent(k, e.getTs().toEpochMilli());
          workerOf.putIfAbsent(k, e.getWorker());
        }
      } else {
        StageJob j = jobs.deserialize(s.topic(), s.value());
        if (ids.contains(j.getRunId())) {
          String k = j.getRunId() + "/" + j.getNode();
          dispatchedAt.putIfAbsent(k, j.getDispatchedAt().toEpochMilli());
          jobSeen.putIfAbsent(k, s.atMs());
        }
      }
    }
    doneByWorker.values().forEach(l -> l.sort(null));
    List<Long> hop1 = new ArrayList<>();
    List<Long> wait = new ArrayList<>();
    List<Long> out = new ArrayList<>();
    List<Long> worker = new ArrayList<>();
    List<Long> busy = new ArrayList<>();
    for (String id : ids) {
      for (String[] edge : new String[][] {{"a", "b"}, {"b", "c"}}) {
        String done = id + "/" + edge[0];
        String next = id + "/" + edge[1];
        Long c = completedAt.get(done);
        Long cs = completedSeen.get(done);
        Long d = dispatchedAt.get(next);
        Long js = jobSeen.get(next);
        Long st = startedAt.get(next);
        if (c == null || cs == null || d == null || js == null || st == null) {
          continue;
        }
        hop1.add(cs - c);
        wait.add(d - cs);
        out.add(js - d);
        worker.add(st - js);
        List<Long> prev = doneByWorker.getOrDefault(workerOf.get(next), List.of());
        int i = Collections.binarySearch(prev, st);
        i = i >= 0 ? i : -i - 2; // the last completion at or before this start
        long busyUntil = i >= 0 ? prev.get(i) : Long.MIN_VALUE;
        busy.add(Math.max(0, Math.min(st, busyUntil) - js));
      }
    }
    // each worker's jobs in order: the job itself (Started -> Completed) and, where the next job
    // was already waiting, the worker's turnaround between them (Completed -> next Started: waiting
    // for the Completed to be acknowledged, the done marker, the commit, decoding the next job)
    Map<String, List<long[]>> jobsByWorker = new HashMap<>();
    for (Map.Entry<String, String> w : workerOf.entrySet()) {
      Long st = startedAt.get(w.getKey());
      Long c = completedAt.get(w.getKey());
      Long js = jobSeen.get(w.getKey());
      if (st != null && c != null) {
        jobsByWorker
            .computeIfAbsent(w.getValue(), x -> new ArrayList<>())
            .add(new long[] {st, c, js == null ? Long.MIN_VALUE : js});
      }
    }
    List<Long> run = new ArrayList<>();
    List<Long> turnaround = new ArrayList<>();
    for (List<long[]> l : jobsByWorker.values()) {
      l.sort((x, y) -> Long.compare(x[0], y[0]));
      for (int k = 0; k < l.size(); k++) {
        run.add(l.get(k)[1] - l.get(k)[0]);
        if (k + 1 < l.size()
            && l.get(k + 1)[2] != Long.MIN_VALUE
            && l.get(k + 1)[2] <= l.get(k)[1]) {
          turnaround.add(l.get(k + 1)[0] - l.get(k)[1]);
        }
      }
    }
    System.out.printf(
        Locale.ROOT,
        "worker per job (every stage, ms, p50/p99): started -> completed %s (n=%d) | completed ->"
            + " next started when that job was waiting %s (n=%d)%n",
        pp(run),
        run.size(),
        pp(turnaround),
        turnaround.size());
    System.out.printf(
        Locale.ROOT,
        "breakdown (n=%d, ms, p50/p99): hop 1 %s | planner wait %s | planner out + hop 2 %s |"
            + " worker %s (of it waiting for its previous job %s)%n",
        hop1.size(),
        pp(hop1),
        pp(wait),
        pp(out),
        pp(worker),
        pp(busy));
  }

  private static String pp(List<Long> values) {
    Percentiles p = Percentiles.of(values.stream().mapToLong(Long::longValue).toArray());
    return String.format(Locale.ROOT, "%.0f/%.0f", p.p50(), p.p99());
  }

  /**
   * The planner's stream-thread metrics from JMX (Kafka's 30 s sample windows, so they cover the
   * measured batch and a little before).
   */
  static void streamThreadMetrics() throws Exception {
    MBeanServer server = ManagementFactory.getPlatformMBeanServer();
    for (ObjectName name :
        server.queryNames(new ObjectName("kafka.streams:type=stream-thread-metrics,*"), null)) {
      StringBuilder line = new StringBuilder("planner " + name.getKeyProperty("thread-id") + ":");
      for (String a :
          List.of(
              "commit-rate",
              "commit-latency-avg",
              "commit-latency-max",
              "poll-latency-avg",
              "process-latency-avg",
              "process-latency-max",
              "punctuate-latency-avg",
              "punctuate-latency-max")) {
        boolean present =
            Arrays.stream(server.getMBeanInfo(name).getAttributes())
                .anyMatch(i -> i.getName().equals(a));
        if (present && server.getAttribute(name, a) instanceof Number n) {
          line.append(String.format(Locale.ROOT, " %s=%.2f", a, n.doubleValue()));
        }
      }
      System.out.println(line);
    }
  }

  /**
   * Records when each record of some topics reaches an idle consumer (from the topics' ends at
   * construction).
   */
  static final class Observer implements AutoCloseable {
    record Seen(String topic, byte[] value, long atMs) {}

    private final List<Seen> seen = new ArrayList<>();
    private final KafkaConsumer<String, byte[]> consumer;
    private final Thread thread;
    private volatile boolean running = true;

    Observer(KafkaSettings kafka, List<String> topics) {
      Map<String, Object> props = kafka.consumer(null, "bench-observer");
      consumer = new KafkaConsumer<>(props);
      List<TopicPartition> parts = new ArrayList<>();
      for (String t : topics) {
        consumer.partitionsFor(t).forEach(p -> parts.add(new TopicPartition(t, p.partition())));
      }
      consumer.assign(parts);
      consumer.seekToEnd(parts);
      parts.forEach(consumer::position); // resolve the ends now, before the batch is registered
      thread =
          Thread.ofPlatform()
              .name("bench-observer")
              .start(
                  () -> {
                    while (running) {
                      var records = consumer.poll(Duration.ofMillis(100));
                      long now = System.currentTimeMillis();
                      records.forEach(r -> seen.add(new Seen(r.topic(), r.value(), now)));
                    }
                  });
    }

    /** What was seen; call after {@link #close}. */
    List<Seen> seen() {
      return seen;
    }

    @Override
    public void close() throws InterruptedException {
      running = false;
      thread.join();
      consumer.close();
    }
  }

  /** Baseline: produce-to-consume latency of single records on the same broker. */
  static Percentiles kafkaHop(KafkaSettings kafka, int n) throws Exception {
    String topic = "bench.hop." + UUID.randomUUID();
    try (TopicAdmin admin = new TopicAdmin(kafka)) {
      admin.ensure(List.of(topic), Map.of());
    }
    long[] lat = new long[n];
    try (var p =
            new KafkaProducer<>(
                kafka.producer("hop"), new StringSerializer(), new ByteArraySerializer());
        KafkaConsumer<String, byte[]> c = assigned(kafka, topic)) {
      c.poll(Duration.ofMillis(100));
      for (int i = 0; i < n; i++) {
        long t = System.nanoTime();
        p.send(new ProducerRecord<>(topic, "k" + i, new byte[64]));
        int got = 0;
        while (got == 0) {
          got = c.poll(Duration.ofMillis(50)).count();
        }
        lat[i] = (System.nanoTime() - t) / 1_000_000;
      }
    }
    return Percentiles.of(lat);
  }

  static KafkaConsumer<String, byte[]> assigned(KafkaSettings kafka, String topic) {
    Map<String, Object> props = kafka.consumer(null, "bench-reader");
    // a long poll: data still returns at once, and an idle reader does not ask the broker 200 times
    // a second
    props.put("fetch.max.wait.ms", 100);
    KafkaConsumer<String, byte[]> c = new KafkaConsumer<>(props);
    List<TopicPartition> parts = List.of();
    long deadline = System.nanoTime() + Duration.ofSeconds(30).toNanos();
    while (parts.isEmpty()
        && System.nanoTime() < deadline) { // a new topic's metadata may lag its creation
      parts =
          c.partitionsFor(topic).stream()
              .map(x -> new TopicPartition(topic, x.partition()))
              .toList();
    }
    if (parts.isEmpty()) {
      throw new IllegalStateException("topic " + topic + " has no partitions after 30 s");
    }
    c.assign(parts);
    c.seekToBeginning(parts);
    return c;
  }

  static void readAll(
      KafkaSettings kafka, String topic, Consumer<ConsumerRecord<String, byte[]>> f) {
    try (KafkaConsumer<String, byte[]> c = assigned(kafka, topic)) {
      Map<TopicPartition, Long> end = c.endOffsets(c.assignment());
      while (end.entrySet().stream().anyMatch(e -> c.position(e.getKey()) < e.getValue())) {
        c.poll(Duration.ofMillis(200)).forEach(f);
      }
    }
  }
}
