package io.distillery.bench;

import ai.djl.ndarray.NDArray;
import io.distillery.model.config.LlamaConfig;
import io.distillery.model.llama.LlamaModel;
import io.distillery.model.safetensors.DType;
import io.distillery.model.tasks.TaskExample;
import io.distillery.model.tasks.TaskKind;
import io.distillery.model.tasks.TaskSettings;
import io.distillery.model.tasks.TaskSuite;
import io.distillery.model.tokenizer.ByteTokenizer;
import io.distillery.serving.ServingConfig;
import io.distillery.serving.ServingNode;
import io.distillery.serving.events.EventSink;
import io.vertx.core.json.JsonObject;
import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * bench/serve: the serving node's requests/s and latency for the teacher and the deployed
 * (compressed) student, on the same task-suite prompts, at concurrency 1 and 8, in one run. Each
 * model runs on its own in-process node (started directly on its checkpoint, no Kafka) and is
 * driven over HTTP, so the numbers include the request path (JSON, event loop, generation queue).
 * The baseline is the teacher measured in the same run; the speed-up is student/teacher requests/s
 * at concurrency 8.
 *
 * <p>Args: {@code --teacher DIR --student DIR [--requests N (default 64)] [--max-tokens N (default
 * 16)]}, or {@code --random DIR} instead of the two models: random checkpoints written there
 * (teacher hidden 256 x 4 layers, student hidden 128 x 2 layers) for a run without trained models.
 */
public final class ServeBench {

  private static final int[] CONCURRENCY = {1, 8};

  private ServeBench() {}

  record Run(
      String model,
      int concurrency,
      double rps,
      Percentiles latencyMs,
      int failed,
      long tokens,
      double seconds) {}

  public static void main(String[] args) throws Exception {
    Path teacher = null;
    Path student = null;
    int requests = 64;
    int maxTokens = 16;
    for (int i = 0; i < args.length; i++) {
      switch (args[i]) {
        case "--teacher" -> teacher = Path.of(args[++i]);
        case "--student" -> student = Path.of(args[++i]);
        case "--requests" -> requests = Integer.parseInt(args[++i]);
        case "--max-tokens" -> maxTokens = Integer.parseInt(args[++i]);
        case "--random" -> {
          Path dir = Path.of(args[++i]);
          teacher = writeRandom(dir.resolve("teacher"), 256, 4, 1);
          student = writeRandom(dir.resolve("student"), 128, 2, 2);
        }
        default ->
            throw new IllegalArgumentException(
                "unknown argument "
                    + args[i]
                    + "; usage: bench/serve --teacher DIR --student DIR [--requests N] [--max-tokens N]");
      }
    }
    if (teacher == null || student == null) {
      throw new IllegalArgumentException(
          "usage: bench/serve --teacher DIR --student DIR [--requests N]");
    }
    for (Path p : List.of(teacher, student)) {
      if (!Files.isDirectory(p)) {
        throw new IllegalArgumentException("not a directory: " + p);
      }
    }
    List<String> prompts =
        TaskSuite.generate(
                Arrays.asList(TaskKind.values()), TaskSettings.defaults(), 0, 0, requests, 17)
            .test()
            .stream()
            .map(TaskExample::prompt)
            .toList();
    System.out.printf(
        Locale.ROOT,
        "prompts=%d (task suite, all kinds) max_tokens=%d cores=%d%n",
        prompts.size(),
        maxTokens,
        Runtime.getRuntime().availableProcessors());

    List<Run> runs = new ArrayList<>();
    for (var model :
        List.of(new Object[] {"teacher", teacher}, new Object[] {"student", student})) {
      String name = (String) model[0];
      Path dir = (Path) model[1];
      ServingConfig config =
          ServingConfig.of(null, null, null)
              .withNodeId("bench-" + name)
              .withConfidenceThreshold(Double.NEGATIVE_INFINITY)
              .withLimits(4096, Math.max(maxTokens, 1))
              .withCapacity(8, 1024, 16)
              .withTiming(Duration.ofMinutes(5), 60_000);
      try (ServingNode node = ServingNode.start(config, EventSink.none())) {
        String sha = node.serveLocal(name, dir, null);
        long params =
            node.routing(name).stable().model().parameters().values().stream()
                .mapToLong(NDArray::size)
                .sum();
        System.out.printf(
            Locale.ROOT,
            "%s: %s params=%d sha256=%s url=%s%n",
            name,
            dir,
            params,
            sha.substring(0, 12),
            node.url());
        drive(
            node.url(),
            name,
            prompts.subList(0, Math.min(8, prompts.size())),
            maxTokens,
            4); // warm-up
        for (int c : CONCURRENCY) {
          Run r = drive(node.url(), name, prompts, maxTokens, c);
          runs.add(r);
          System.out.printf(
              Locale.ROOT,
              "%-8s concurrency=%d  %7.2f req/s  p50=%7.1f ms  p99=%7.1f ms  max=%7.1f ms  %6.0f tok/s  failed=%d%n",
              name,
              c,
              r.rps(),
              r.latencyMs().p50(),
              r.latencyMs().p99(),
              r.latencyMs().max(),
              r.tokens() / r.seconds(),
              r.failed());
        }
      }
    }
    Run t1 = find(runs, "teacher", 1);
    Run s1 = find(runs, "student", 1);
    Run t8 = find(runs, "teacher", 8);
    Run s8 = find(runs, "student", 8);
    int failed = runs.stream().mapToInt(Run::failed).sum();
    System.out.printf(
        Locale.ROOT,
        "speedup concurrency=1: %.2fx  concurrency=8: %.2fx  (student/teacher req/s)%n",
        s1.rps() / t1.rps(),
        s8.rps() / t8.rps());
    System.out.printf(
        Locale.ROOT,
        "scaling 1->8: teacher %.2fx student %.2fx%n",
        t8.rps() / t1.rps(),
        s8.rps() / s1.rps());
    System.out.printf(
        Locale.ROOT,
        "serve teacher_rps=%.2f student_rps=%.2f speedup=%.2f student_p99_ms=%.1f failed=%d%n",
        t8.rps(),
        s8.rps(),
        s8.rps() / t8.rps(),
        s8.latencyMs().p99(),
        failed);
  }

  /**
   * A random byte-level Llama checkpoint (the teacher size of bench/model at hidden 256, 4 layers).
   */
  private static Path writeRandom(Path dir, int hidden, int layers, long seed) throws IOException {
    if (!Files.exists(dir.resolve("config.json"))) {
      LlamaConfig cfg =
          LlamaConfig.builder()
              .vocabSize(ByteTokenizer.VOCAB_SIZE)
              .hiddenSize(hidden)
              .intermediateSize(hidden * 8 / 3 / 64 * 64 + 64)
              .numHiddenLayers(layers)
              .numAttentionHeads(hidden / 64)
              .numKeyValueHeads(Math.max(1, hidden / 128))
              .maxPositionEmbeddings(512)
              .build();
      try (LlamaModel m = LlamaModel.random(cfg, seed)) {
        m.save(dir, DType.F32);
      }
      ByteTokenizer.instance().save(dir);
    }
    return dir;
  }

  private static Run find(List<Run> runs, String model, int c) {
    return runs.stream()
        .filter(r -> r.model().equals(model) && r.concurrency() == c)
        .findFirst()
        .orElseThrow();
  }

  /**
   * Sends every prompt once, {@code concurrency} at a time; latency per request, throughput over
   * the wall time.
   */
  private static Run drive(
      String url, String model, List<String> prompts, int maxTokens, int concurrency)
      throws Exception {
    HttpClient http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(5)).build();
    AtomicInteger next = new AtomicInteger();
    AtomicInteger failed = new AtomicInteger();
    long[] latencies = new long[prompts.size()];
    long[] tokens = new long[prompts.size()];
    ExecutorService pool = Executors.newFixedThreadPool(concurrency);
    long start = System.nanoTime();
    List<Future<?>> clients = new ArrayList<>();
    for (int c = 0; c < concurrency; c++) {
      clients.add(
          pool.submit(
              () -> {
                int i;
                while ((i = next.getAndIncrement()) < prompts.size()) {
                  String body =
                      new JsonObject()
                          .put("model", model)
                          .put("prompt", prompts.get(i))
                          .put("max_tokens", maxTokens)
                          .encode();
                  long t0 = System.nanoTime();
                  try {
                    HttpResponse<String> r =
                        http.send(
                            HttpRequest.newBuilder(URI.create(url + "/v1/completions"))
                                .timeout(Duration.ofMinutes(5))
                                .POST(HttpRequest.BodyPublishers.ofString(body))
                                .build(),
                            HttpResponse.BodyHandlers.ofString());
                    if (r.statusCode() != 200) {
                      failed.incrementAndGet();
                    } else {
                      tokens[i] =
                          new JsonObject(r.body())
                              .getJsonObject("usage")
                              .getLong("completion_tokens");
                    }
                  } catch (Exception e) {
                    failed.incrementAndGet();
                  }
                  latencies[i] = System.nanoTime() - t0;
                }
                return null;
              }));
    }
    for (Future<?> f : clients) {
      f.get();
    }
    double seconds = (System.nanoTime() - start) / 1e9;
    pool.shutdown();
    long[] ms =
        Arrays.stream(latencies).map(n -> n / 1_000).toArray(); // microseconds for resolution
    Percentiles p = Percentiles.of(ms);
    return new Run(
        model,
        concurrency,
        prompts.size() / seconds,
        new Percentiles(p.p50() / 1000, p.p99() / 1000, p.max() / 1000, p.n()),
        failed.get(),
        Arrays.stream(tokens).sum(),
        seconds);
  }
}
