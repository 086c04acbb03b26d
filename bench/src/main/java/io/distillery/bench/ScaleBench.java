package io.distillery.bench;

import static io.distillery.bench.BenchArtefacts.input;
import static io.distillery.bench.BenchArtefacts.ref;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import io.distillery.calibrator.CalibratorParams;
import io.distillery.calibrator.CalibratorStage;
import io.distillery.deployer.DeployerParams;
import io.distillery.deployer.packaging.DjlServingPackage;
import io.distillery.evaluator.EvaluatorParams;
import io.distillery.evaluator.EvaluatorStage;
import io.distillery.model.calib.CalibrationStats;
import io.distillery.model.config.LlamaConfig;
import io.distillery.model.config.LlamaTensorNames;
import io.distillery.model.config.RopeScaling;
import io.distillery.model.safetensors.RandomCheckpoint;
import io.distillery.model.stream.MemoryPlan;
import io.distillery.pruner.PrunerParams;
import io.distillery.pruner.PrunerStage;
import io.distillery.quantizer.QuantizerParams;
import io.distillery.quantizer.QuantizerStage;
import io.distillery.quantizer.Scheme;
import io.distillery.schemas.common.ArtefactRef;
import io.distillery.schemas.job.StageJob;
import io.distillery.stage.ContentHash;
import io.distillery.stage.FileTrees;
import io.distillery.stage.StageContext;
import io.distillery.stage.StageResult;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.lang.management.BufferPoolMXBean;
import java.lang.management.ManagementFactory;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Instant;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.SplittableRandom;

/**
 * bench/scale: a real-size model through the stages' own code on this machine, as issue 16 asks.
 * Writes a random-weight BF16 checkpoint of the exact Llama-3.2-1B shape (hidden 2048, 16 layers,
 * 32/8 heads, MLP 8192, vocab 128256, tied, rope llama3; weights N(0, 0.02), norms 1; two shards
 * with an index; a byte-level BPE tokenizer.json with Llama 3's special tokens) or Llama-3.1-8B
 * shape (hidden 4096, 32 layers, MLP 14336, untied), then runs in-process: the calibrator on a
 * dataset of samples x seqLen tokens, the quantizer (w4-gptq g128 by default, streamed and
 * sequential; it computes each layer's Hessians from the calibrator's token ids), the evaluator
 * (perplexity and teacher-forced exact match on {@code --prompts} task prompts, streamed when the
 * models do not fit the budget) and the deployer's packaging for the local target. For each stage
 * it prints wall time and peak anonymous resident memory ({@code RssAnon} of /proc/self/status,
 * sampled every 20 ms: what the stage holds, not the page cache of the mapped input), and for the
 * quantizer the memory plan's estimate beside the measured peak and the achieved GFLOP/s of the
 * calibration forward, of X^T X and of GPTQ against DJL's raw matmul rate measured in the same run.
 *
 * <p>With {@code --stage pruner} the calibrator and then the pruner stage run instead (streamed,
 * sequential; {@code --method} sparsegpt by default, or wanda / magnitude; {@code --pattern} 2:4 by
 * default, or an unstructured sparsity such as 0.5).
 *
 * <p>With {@code --only quantizer} only the quantizer stage runs (the calibrator too when the
 * scheme needs calibration; no raw matmul rates, evaluator or packaging), and then the sha256 that
 * names the output artefact ({@link ContentHash#of}, as the artefact store computes it): the
 * stage's I/O path in isolation. Last line: {@code scale model=NAME stage=quantizer scheme=S
 * seconds=X gb_per_s=X hash_seconds=X} (GB/s of input weights through the stage).
 *
 * <p>Args: {@code --shape 1b|8b} (default 1b), {@code --layers N} (the shape's width with N decoder
 * layers), {@code --samples N} (32), {@code --seq N} (512), {@code --scheme} (w4-gptq), {@code
 * --group G} (128), {@code --prompts N} (32), {@code --budget-gb X} the worker budget planned
 * against (default: max heap), {@code --dir D} (default /tmp/scale-bench; deleted after unless
 * {@code --keep true}), {@code --model D} an existing checkpoint of that shape to use instead of
 * writing one (left in place), {@code --write-only true} to write the checkpoint (for {@code
 * distillery register}) and stop. Last line: {@code scale model=NAME params=N peak_rss_gb=X
 * seconds=N gptq_efficiency=X}, the peak over the four stages and their seconds together.
 */
public final class ScaleBench {

  private ScaleBench() {}

  public static void main(String[] args) throws Exception {
    Map<String, String> o = new LinkedHashMap<>();
    for (int i = 0; i + 1 < args.length; i += 2) {
      o.put(args[i].replaceFirst("^--", ""), args[i + 1]);
    }
    String shape = o.getOrDefault("shape", "1b");
    int samples = Integer.parseInt(o.getOrDefault("samples", "32"));
    int seq = Integer.parseInt(o.getOrDefault("seq", "512"));
    String scheme = o.getOrDefault("scheme", "w4-gptq");
    String stage = o.getOrDefault("stage", "quantizer");
    if (!stage.equals("quantizer") && !stage.equals("pruner")) {
      throw new IllegalArgumentException("--stage must be quantizer or pruner, got " + stage);
    }
    String only = o.getOrDefault("only", "");
    if (!only.isEmpty() && !(only.equals("quantizer") && stage.equals("quantizer"))) {
      throw new IllegalArgumentException("--only must be quantizer (with --stage quantizer)");
    }
    boolean quantizerOnly = !only.isEmpty();
    String method = o.getOrDefault("method", "sparsegpt");
    String pattern = o.getOrDefault("pattern", "2:4");
    int group = Integer.parseInt(o.getOrDefault("group", "128"));
    int prompts = Integer.parseInt(o.getOrDefault("prompts", "32"));
    long budget =
        o.containsKey("budget-gb")
            ? (long) (Double.parseDouble(o.get("budget-gb")) * 1e9)
            : Runtime.getRuntime().maxMemory();
    Path dir = Path.of(o.getOrDefault("dir", "/tmp/scale-bench"));
    boolean writeOnly = Boolean.parseBoolean(o.getOrDefault("write-only", "false"));
    boolean keep = writeOnly || Boolean.parseBoolean(o.getOrDefault("keep", "false"));
    LlamaConfig config =
        switch (shape) {
          case "1b" ->
              LlamaConfig.builder()
                  .vocabSize(128256)
                  .hiddenSize(2048)
                  .intermediateSize(8192)
                  .numHiddenLayers(Integer.parseInt(o.getOrDefault("layers", "16")))
                  .numAttentionHeads(32)
                  .numKeyValueHeads(8)
                  .maxPositionEmbeddings(131072)
                  .rmsNormEps(1e-5)
                  .ropeTheta(500000)
                  .ropeScaling(RopeScaling.llama3(32, 1, 4, 8192))
                  .tieWordEmbeddings(true)
                  .torchDtype("bfloat16")
                  .bosTokenId(128000)
                  .eosTokenIds(List.of(128001))
                  .build();
          case "8b" ->
              LlamaConfig.builder()
                  .vocabSize(128256)
                  .hiddenSize(4096)
                  .intermediateSize(14336)
                  .numHiddenLayers(Integer.parseInt(o.getOrDefault("layers", "32")))
                  .numAttentionHeads(32)
                  .numKeyValueHeads(8)
                  .maxPositionEmbeddings(131072)
                  .rmsNormEps(1e-5)
                  .ropeTheta(500000)
                  .ropeScaling(RopeScaling.llama3(8, 1, 4, 8192))
                  .tieWordEmbeddings(false)
                  .torchDtype("bfloat16")
                  .bosTokenId(128000)
                  .eosTokenIds(List.of(128001))
                  .build();
          default -> throw new IllegalArgumentException("--shape must be 1b or 8b, got " + shape);
        };
    String name =
        "llama-3."
            + (shape.equals("1b") ? "2-1b" : "1-8b")
            + "-shape"
            + (o.containsKey("layers") ? "-" + config.numHiddenLayers() + "l" : "");
    long params = LlamaTensorNames.parameterCount(config);
    RssSampler rss = new RssSampler();
    rss.start();
    System.out.printf(
        Locale.ROOT,
        "scale: %s params=%,d samples=%d seq=%d %s budget=%s max_heap=%s cores=%d%n",
        name,
        params,
        samples,
        seq,
        stage.equals("pruner")
            ? "stage=pruner method=" + method + " pattern=" + pattern
            : "scheme=" + scheme + " group=" + group,
        MemoryPlan.gigabytes(budget),
        MemoryPlan.gigabytes(Runtime.getRuntime().maxMemory()),
        Runtime.getRuntime().availableProcessors());
    deleteTree(dir);
    Files.createDirectories(dir);
    try {
      double matmul = quantizerOnly ? Double.NaN : rawMatmulGflops(DataType.FLOAT32);
      double matmul64 = quantizerOnly ? Double.NaN : rawMatmulGflops(DataType.FLOAT64);
      if (!quantizerOnly) {
        System.out.printf(
            Locale.ROOT,
            "  DJL raw matmul (2048x2048 . 2048x4096): f32 %.1f GFLOP/s, f64 %.1f GFLOP/s%n",
            matmul,
            matmul64);
      }

      rss.reset();
      long t0 = System.nanoTime();
      Path model = o.containsKey("model") ? Path.of(o.get("model")) : dir.resolve("model");
      if (o.containsKey("model")) {
        LlamaConfig existing = LlamaConfig.read(model.resolve(LlamaConfig.FILE_NAME));
        if (existing.hiddenSize() != config.hiddenSize()
            || existing.numHiddenLayers() != config.numHiddenLayers()) {
          throw new IllegalArgumentException(
              "--model " + model + " is not of the " + shape + " shape");
        }
        System.out.printf(Locale.ROOT, "  %-10s reusing %s%n", "generate", model);
      } else {
        long bytes = RandomCheckpoint.write(config, model, 7);
        ByteLevelTokenizer.write(model, config.bosTokenId(), config.eosTokenIds().getFirst());
        double generate = (System.nanoTime() - t0) / 1e9;
        stageLine(
            "generate",
            generate,
            rss.peakAnon(),
            String.format(Locale.ROOT, "%.2f GB BF16 in two shards", bytes / 1e9));
        if (writeOnly) {
          System.out.printf(Locale.ROOT, "  wrote %s%n", model);
          return;
        }
      }

      // calibration text: one line a sample, long enough for seq byte-level tokens
      Path data = Files.createDirectories(dir.resolve("data"));
      SplittableRandom random = new SplittableRandom(11);
      StringBuilder lines = new StringBuilder();
      for (int s = 0; s < samples; s++) {
        StringBuilder line = new StringBuilder();
        while (line.length() < seq) {
          int word = 2 + random.nextInt(8);
          for (int c = 0; c < word; c++) {
            line.append((char) ('a' + random.nextInt(26)));
          }
          line.append(' ');
        }
        lines.append(line, 0, seq).append('\n');
      }
      Files.writeString(data.resolve("calibration.txt"), lines);

      double total = 0;
      long peak = 0;
      if (quantizerOnly && !Scheme.of(scheme).needsCalibration()) {
        quantizeOnly(dir, model, scheme, group, budget, rss, name);
        return;
      }
      rss.reset();
      t0 = System.nanoTime();
      StageResult calibrated =
          new CalibratorStage()
              .run(
                  context(
                      dir,
                      "calibrator",
                      model,
                      List.of(input("data", "dataset", data, "dataset")),
                      new CalibratorParams(samples, seq, "dataset", null, null, null),
                      budget));
      double calibrate = (System.nanoTime() - t0) / 1e9;
      total += calibrate;
      peak = Math.max(peak, rss.peakAnon());
      Path calibration = calibrated.outputs().getFirst().path();
      stageLine(
          "calibrate",
          calibrate,
          rss.peakAnon(),
          String.format(
              Locale.ROOT,
              "%d samples x %d tokens, streamed %s",
              samples,
              seq,
              calibrated.metrics().getOrDefault("streamed", 0.0) == 1.0));

      if (quantizerOnly) {
        quantizeOnly(dir, model, scheme, group, budget, rss, name, calibration);
        return;
      }
      if (stage.equals("pruner")) {
        prune(dir, model, calibration, method, pattern, budget, rss, name, params, matmul64);
        return;
      }
      rss.reset();
      t0 = System.nanoTime();
      StageResult result = quantize(dir, model, calibration, scheme, group, budget);
      double quantize = (System.nanoTime() - t0) / 1e9;
      long quantizePeak = rss.peakAnon();
      total += quantize;
      peak = Math.max(peak, quantizePeak);
      Map<String, Double> m = result.metrics();
      double forwardRate =
          m.getOrDefault("forward_gflop", 0.0)
              / Math.max(1e-9, m.getOrDefault("forward_seconds", 0.0));
      double gptqRate =
          m.containsKey("gptq_seconds")
              ? m.get("gptq_gflop") / Math.max(1e-9, m.get("gptq_seconds"))
              : Double.NaN;
      stageLine("quantize", quantize, quantizePeak, planned(rss, m, quantizePeak));
      System.out.printf(
          Locale.ROOT,
          "    calibration forward: %.0f GFLOP in %.1f s = %.1f GFLOP/s, %.2f of raw f32%n",
          m.getOrDefault("forward_gflop", 0.0),
          m.getOrDefault("forward_seconds", 0.0),
          forwardRate,
          forwardRate / matmul);
      double hessianRate =
          m.getOrDefault("hessian_gflop", 0.0)
              / Math.max(1e-9, m.getOrDefault("hessian_seconds", 0.0));
      System.out.printf(
          Locale.ROOT,
          "    X^T X (f64): %.0f GFLOP in %.1f s = %.1f GFLOP/s, %.2f of raw f64%n",
          m.getOrDefault("hessian_gflop", 0.0),
          m.getOrDefault("hessian_seconds", 0.0),
          hessianRate,
          hessianRate / matmul64);
      System.out.printf(
          Locale.ROOT,
          "    gptq: %.0f GFLOP in %.1f s = %.1f GFLOP/s, %.2f of raw f32%n",
          m.getOrDefault("gptq_gflop", 0.0),
          m.getOrDefault("gptq_seconds", 0.0),
          gptqRate,
          gptqRate / matmul);
      long inputBytes = 0;
      try (var files = Files.list(model)) {
        for (Path f : files.filter(f -> f.toString().endsWith(".safetensors")).toList()) {
          inputBytes += Files.size(f);
        }
      }
      System.out.printf(
          Locale.ROOT,
          "    end to end: %.2f GB of input weights at %.2f GB/s%n",
          inputBytes / 1e9,
          inputBytes / 1e9 / quantize);
      System.out.printf(
          Locale.ROOT,
          "    load, write and the rest: %.1f s; weights %.2f GB -> %.2f GB%n",
          quantize
              - m.getOrDefault("forward_seconds", 0.0)
              - m.getOrDefault("hessian_seconds", 0.0)
              - m.getOrDefault("gptq_seconds", 0.0),
          m.get("weight_bytes_before") / 1e9,
          m.get("weight_bytes_after") / 1e9);

      StageResult.Output quantized = result.outputs().getFirst();
      rss.reset();
      t0 = System.nanoTime();
      StageResult evaluated =
          new EvaluatorStage()
              .run(
                  context(
                      dir,
                      "evaluator",
                      model,
                      List.of(input("quantize", "quantizer", quantized.path(), quantized.format())),
                      new EvaluatorParams(null, prompts, null, null, null, null, null, null, null),
                      budget));
      double evaluate = (System.nanoTime() - t0) / 1e9;
      total += evaluate;
      peak = Math.max(peak, rss.peakAnon());
      Map<String, Double> e = evaluated.metrics();
      stageLine(
          "evaluate",
          evaluate,
          rss.peakAnon(),
          String.format(
              Locale.ROOT,
              "%d prompts teacher-forced, streamed %s; perplexity ratio %.4f, exact match %.3f vs reference %.3f",
              prompts,
              e.getOrDefault("streamed", 0.0) == 1.0,
              e.getOrDefault("perplexity", Double.NaN)
                  / e.getOrDefault("referencePerplexity", Double.NaN),
              e.getOrDefault("exactMatch", Double.NaN),
              e.getOrDefault("referenceExactMatch", Double.NaN)));

      rss.reset();
      t0 = System.nanoTime();
      Path pkg = dir.resolve("deployer").resolve("package");
      DjlServingPackage.assembleModel(quantized.path(), model, pkg);
      ArtefactRef modelRef = ref(model, "hf-llama");
      DjlServingPackage.Written written =
          DjlServingPackage.write(
              pkg,
              new DjlServingPackage.Spec(
                  "scale",
                  "scale",
                  "scale/deploy",
                  "deploy",
                  "quantize",
                  ref(quantized.path(), quantized.format()),
                  modelRef,
                  ref(pkg.resolve(DjlServingPackage.MODEL_DIR), DjlServingPackage.MODEL_FORMAT),
                  new DeployerParams(
                      DeployerParams.LOCAL,
                      "scale",
                      null,
                      null,
                      null,
                      null,
                      null,
                      null,
                      null,
                      null,
                      null,
                      null)));
      double deploy = (System.nanoTime() - t0) / 1e9;
      total += deploy;
      peak = Math.max(peak, rss.peakAnon());
      stageLine(
          "package",
          deploy,
          rss.peakAnon(),
          String.format(
              Locale.ROOT,
              "djl-serving package for target local, %s",
              written.quantization().scheme()));

      System.out.printf(
          Locale.ROOT,
          "scale model=%s params=%d peak_rss_gb=%.2f seconds=%.0f gptq_efficiency=%.3f%n",
          name,
          params,
          peak / 1e9,
          total,
          gptqRate / matmul);
    } finally {
      rss.stop();
      if (!keep) {
        deleteTree(dir);
      }
    }
  }

  /**
   * The pruner stage (streamed, sequential) on the same checkpoint and tokens: wall time, peak
   * RssAnon against the plan, the forward's and X^T X's shares.
   */
  private static void prune(
      Path dir,
      Path model,
      Path calibration,
      String method,
      String pattern,
      long budget,
      RssSampler rss,
      String name,
      long params,
      double matmul64)
      throws Exception {
    rss.reset();
    long t0 = System.nanoTime();
    PrunerParams pruner =
        new PrunerParams(
            method,
            pattern.equals("2:4") ? null : Double.parseDouble(pattern),
            pattern.equals("2:4") ? "2:4" : "unstructured",
            null,
            null,
            null,
            null,
            null,
            null);
    StageResult result =
        new PrunerStage()
            .run(
                context(
                    dir,
                    "pruner",
                    model,
                    List.of(input("calibrate", "calibrator", calibration, CalibrationStats.FORMAT)),
                    pruner,
                    budget));
    double seconds = (System.nanoTime() - t0) / 1e9;
    long peak = rss.peakAnon();
    Map<String, Double> m = result.metrics();
    stageLine("prune", seconds, peak, planned(rss, m, peak));
    System.out.printf(
        Locale.ROOT,
        "    calibration forward: %.0f GFLOP in %.1f s; statistics (%s) %.1f s%s; pruning %.1f s;"
            + " sparsity %.3f%n",
        m.getOrDefault("forward_gflop", 0.0),
        m.getOrDefault("forward_seconds", 0.0),
        method.equals("sparsegpt") ? "X^T X f64" : "channel norms",
        m.getOrDefault("statistics_seconds", 0.0),
        m.containsKey("hessian_gflop")
            ? String.format(
                Locale.ROOT,
                " = %.1f GFLOP/s, %.2f of raw f64",
                m.get("hessian_gflop") / Math.max(1e-9, m.get("statistics_seconds")),
                m.get("hessian_gflop") / Math.max(1e-9, m.get("statistics_seconds")) / matmul64)
            : "",
        m.getOrDefault("prune_seconds", 0.0),
        m.get("sparsity"));
    System.out.printf(
        Locale.ROOT,
        "scale model=%s params=%d stage=pruner method=%s pattern=%s peak_rss_gb=%.2f"
            + " plan_gb=%.2f seconds=%.0f%n",
        name,
        params,
        method,
        pattern,
        peak / 1e9,
        m.get("planned_peak_bytes") / 1e9,
        seconds);
  }

  private static void quantizeOnly(
      Path dir, Path model, String scheme, int group, long budget, RssSampler rss, String name)
      throws Exception {
    quantizeOnly(dir, model, scheme, group, budget, rss, name, null);
  }

  /**
   * The quantizer stage alone (its calibration, if any, already done), then the output's content
   * hash as the artefact store computes it: wall time of each and GB/s of input weights.
   */
  private static void quantizeOnly(
      Path dir,
      Path model,
      String scheme,
      int group,
      long budget,
      RssSampler rss,
      String name,
      Path calibration)
      throws Exception {
    long inputBytes = 0;
    try (var files = Files.list(model)) {
      for (Path f : files.filter(f -> f.toString().endsWith(".safetensors")).toList()) {
        inputBytes += Files.size(f);
      }
    }
    rss.reset();
    long cpu0 = processCpuNanos();
    long t0 = System.nanoTime();
    StageResult result = quantize(dir, model, calibration, scheme, group, budget);
    double quantize = (System.nanoTime() - t0) / 1e9;
    double cpu = (processCpuNanos() - cpu0) / 1e9;
    long peak = rss.peakAnon();
    Map<String, Double> m = result.metrics();
    stageLine("quantize", quantize, peak, planned(rss, m, peak));
    System.out.printf(
        Locale.ROOT,
        "    process CPU %.1f s in %.1f s of wall time (%d cores, the rest waiting on the disk or"
            + " other processes)%n",
        cpu,
        quantize,
        Runtime.getRuntime().availableProcessors());
    Path out = result.outputs().getFirst().path();
    t0 = System.nanoTime();
    String sha = ContentHash.of(out);
    double hash = (System.nanoTime() - t0) / 1e9;
    long outBytes = ContentHash.sizeOf(out);
    System.out.printf(
        Locale.ROOT,
        "    weights %.2f GB -> %.2f GB; output %.2f GB hashed in %.1f s (%.2f GB/s, sha256 %s)%n",
        m.get("weight_bytes_before") / 1e9,
        m.get("weight_bytes_after") / 1e9,
        outBytes / 1e9,
        hash,
        outBytes / 1e9 / hash,
        sha.substring(0, 12));
    System.out.printf(
        Locale.ROOT,
        "    end to end: %.2f GB of input weights at %.2f GB/s (%.2f GB/s with the hash)%n",
        inputBytes / 1e9,
        inputBytes / 1e9 / quantize,
        inputBytes / 1e9 / (quantize + hash));
    System.out.printf(
        Locale.ROOT,
        "scale model=%s stage=quantizer scheme=%s seconds=%.1f gb_per_s=%.2f hash_seconds=%.1f%n",
        name,
        scheme,
        quantize,
        inputBytes / 1e9 / quantize,
        hash);
  }

  /** CPU time of this process (all threads: the stage's, GC, JIT), in nanoseconds. */
  private static long processCpuNanos() {
    return ((com.sun.management.OperatingSystemMXBean) ManagementFactory.getOperatingSystemMXBean())
        .getProcessCpuTime();
  }

  /** A planned stage's detail: peak VmRSS, and its memory plan against the measured peak. */
  private static String planned(RssSampler rss, Map<String, Double> metrics, long peakAnon) {
    double plan = metrics.get("planned_peak_bytes");
    return String.format(
        Locale.ROOT,
        "peak VmRSS %.2f GB, plan %.2f GB, plan/measured %.2f",
        rss.peakRss() / 1e9,
        plan / 1e9,
        plan / peakAnon);
  }

  /** One stage's line: its name, wall time, peak RssAnon, and what it did. */
  private static void stageLine(String stage, double seconds, long peakAnon, String detail) {
    System.out.printf(
        Locale.ROOT,
        "  %-10s %8.1f s  peak RssAnon %5.2f GB  (%s)%n",
        stage,
        seconds,
        peakAnon / 1e9,
        detail);
  }

  /** The quantizer stage on {@code model}, with the calibrator's output when there is one. */
  private static StageResult quantize(
      Path dir, Path model, Path calibration, String scheme, int group, long budget)
      throws Exception {
    return new QuantizerStage()
        .run(
            context(
                dir,
                "quantizer",
                model,
                calibration == null
                    ? List.of()
                    : List.of(
                        input("calibrate", "calibrator", calibration, CalibrationStats.FORMAT)),
                new QuantizerParams(scheme, group, null, null, null, null, null),
                budget));
  }

  private static <P extends Record> StageContext<P> context(
      Path dir, String stage, Path model, List<StageContext.Input> inputs, P params, long budget)
      throws IOException {
    StageJob job =
        StageJob.newBuilder()
            .setRunId("scale")
            .setJobId("scale/" + stage)
            .setAttempt(1)
            .setStage(stage)
            .setNode(stage)
            .setParams("{}")
            .setModel(ref(model, "hf-llama"))
            .setTimeoutMs(0L)
            .setDispatchedAt(Instant.now())
            .build();
    String[] last = {""};
    return new StageContext<>(
        job,
        params,
        model,
        inputs,
        Files.createDirectories(dir.resolve(stage)),
        Files.createDirectories(dir.resolve("work-" + stage)),
        (percent, message, metrics) -> {
          // one line a layer step change is plenty
          String head =
              message.contains(" (") ? message.substring(0, message.indexOf(" (")) : message;
          if (!head.equals(last[0])) {
            last[0] = head;
            // resident memory at each step, to see what grows from layer to layer
            System.err.printf(
                Locale.ROOT,
                "    %5.1f%% %s  [RssAnon %.2f GB, heap committed %.2f GB, direct %.2f GB]%n",
                percent,
                message,
                RssSampler.currentAnon() / 1e9,
                Runtime.getRuntime().totalMemory() / 1e9,
                directBytes() / 1e9);
          }
        },
        budget);
  }

  /** Bytes of direct buffers (DJL's transfers into and out of the engine) allocated now. */
  private static long directBytes() {
    return ManagementFactory.getPlatformMXBeans(BufferPoolMXBean.class).stream()
        .filter(pool -> pool.getName().equals("direct"))
        .mapToLong(BufferPoolMXBean::getMemoryUsed)
        .sum();
  }

  /**
   * DJL's f32 (or f64) matmul rate on a 2048x2048 by 2048x4096 product, repeated for about 2
   * seconds.
   */
  static double rawMatmulGflops(DataType type) {
    try (NDManager manager = Engine.getEngine("PyTorch").newBaseManager()) {
      NDArray a = manager.randomNormal(new Shape(2048, 2048)).toType(type, false);
      NDArray b = manager.randomNormal(new Shape(2048, 4096)).toType(type, false);
      a.matMul(b).close(); // warm-up
      long t0 = System.nanoTime();
      int n = 0;
      while (System.nanoTime() - t0 < 2_000_000_000L) {
        a.matMul(b).close();
        n++;
      }
      double seconds = (System.nanoTime() - t0) / 1e9;
      return n * 2.0 * 2048 * 2048 * 4096 / seconds / 1e9;
    }
  }

  /**
   * Samples VmRSS and RssAnon of /proc/self/status every 20 ms; peaks since the last reset and
   * overall.
   */
  static final class RssSampler implements Runnable {
    private volatile boolean running = true;
    private volatile long peakAnon;
    private volatile long peakRss;
    private volatile long overallAnon;
    private Thread thread;

    void start() {
      thread = Thread.ofPlatform().daemon().name("rss-sampler").start(this);
    }

    void stop() throws InterruptedException {
      running = false;
      thread.join();
    }

    synchronized void reset() {
      sample();
      peakAnon = 0;
      peakRss = 0;
    }

    long peakAnon() {
      sample();
      return peakAnon;
    }

    long peakRss() {
      return peakRss;
    }

    long overallAnon() {
      return overallAnon;
    }

    @Override
    public void run() {
      while (running) {
        sample();
        try {
          Thread.sleep(20);
        } catch (InterruptedException e) {
          return;
        }
      }
    }

    private synchronized void sample() {
      long[] now = current();
      peakAnon = Math.max(peakAnon, now[0]);
      overallAnon = Math.max(overallAnon, now[0]);
      peakRss = Math.max(peakRss, now[1]);
    }

    /** RssAnon of this process now, in bytes. */
    static long currentAnon() {
      return current()[0];
    }

    /** RssAnon and VmRSS of this process now, in bytes, from /proc/self/status. */
    private static long[] current() {
      long[] now = new long[2];
      try {
        for (String line : Files.readAllLines(Path.of("/proc/self/status"))) {
          if (line.startsWith("RssAnon:")) {
            now[0] = kilobytes(line) * 1024;
          } else if (line.startsWith("VmRSS:")) {
            now[1] = kilobytes(line) * 1024;
          }
        }
      } catch (IOException e) {
        throw new UncheckedIOException(e);
      }
      return now;
    }

    private static long kilobytes(String line) {
      return Long.parseLong(line.replaceAll("[^0-9]", ""));
    }
  }

  private static void deleteTree(Path root) throws IOException {
    FileTrees.delete(root);
  }
}
