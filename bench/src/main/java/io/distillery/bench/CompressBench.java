package io.distillery.bench;

import static io.distillery.bench.BenchArtefacts.input;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import ai.djl.pytorch.jni.JniUtils;
import io.distillery.calibrator.CalibratorParams;
import io.distillery.calibrator.CalibratorStage;
import io.distillery.model.calib.CalibrationStats;
import io.distillery.model.calib.LayerStats;
import io.distillery.model.config.LlamaConfig;
import io.distillery.model.config.LlamaTensorNames;
import io.distillery.model.llama.KvCache;
import io.distillery.model.llama.LlamaModel;
import io.distillery.model.quant.CompressedTensors;
import io.distillery.model.quant.GroupQuantizer;
import io.distillery.model.quant.QuantizedWeight;
import io.distillery.model.safetensors.Checkpoint;
import io.distillery.model.tasks.ExactMatch;
import io.distillery.model.tasks.Perplexity;
import io.distillery.model.tasks.TaskBatch;
import io.distillery.model.tasks.TaskExample;
import io.distillery.model.tasks.TaskJsonl;
import io.distillery.model.tokenizer.ByteTokenizer;
import io.distillery.pruner.PrunerParams;
import io.distillery.pruner.PrunerStage;
import io.distillery.quantizer.QuantizerParams;
import io.distillery.quantizer.QuantizerStage;
import io.distillery.schemas.common.ArtefactRef;
import io.distillery.schemas.job.StageJob;
import io.distillery.stage.FileTrees;
import io.distillery.stage.Stage;
import io.distillery.stage.StageContext;
import io.distillery.stage.StageResult;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.TreeMap;

/**
 * bench/compress: every post-training compression the quantizer and pruner offer, applied to one
 * trained teacher in one run and measured against that teacher's own uncompressed quality on its
 * held-out split. The calibrator runs once; each scheme runs through the same {@link Stage} code
 * the workers run (in-process, no broker), and its output checkpoint is loaded the way the
 * evaluator loads it (compressed-tensors dequantized on load, W8A8 with its static activation
 * quantization simulated). Per scheme: bytes of the linear weights it compresses, perplexity of the
 * held-out answers, greedy exact match, and the ratios to the dense teacher.
 *
 * <p>Then quantize throughput: GB of F32 linear weights per second through w8-rtn's per-channel
 * INT8 kernel, against reading the same tensors from the (page-cached, memory-mapped) checkpoint
 * into float arrays, both single-threaded and each repeated for a fixed time.
 *
 * <p>Args: {@code --teacher DIR} (with test.jsonl; default /tmp/teacher-d), {@code --prompts N}
 * exact-match prompts (default 200), {@code --ppl-prompts N} perplexity prompts (default all),
 * {@code --samples N} calibration samples (default 512), {@code --group G} INT4 group size
 * (default: the largest of 128, 64, 32, 16 dividing every width), {@code --seconds S} per
 * throughput measurement (default 2), {@code --threads N} engine threads, {@code --schemes} a comma
 * list of {@code
 * w8-rtn,w8a8-smoothquant,fp8,w4-rtn,w4-awq,w4-gptq,sp24-magnitude,sp24-wanda,sp24-sparsegpt}
 * (default all; the ratios of schemes not run print NaN), {@code --exclude} modules the quantizer
 * leaves dense (default lm_head; e.g. {@code lm_head,down_proj} to try a group size the MLP width
 * does not allow).
 */
public final class CompressBench {

  private static final String[] QUANT_SCHEMES = {
    "w8-rtn", "w8a8-smoothquant", "fp8", "w4-rtn", "w4-awq", "w4-gptq"
  };
  private static final String[] PRUNE_METHODS = {"magnitude", "wanda", "sparsegpt"};
  private static final List<String> ALL =
      List.of(
          "w8-rtn",
          "w8a8-smoothquant",
          "fp8",
          "w4-rtn",
          "w4-awq",
          "w4-gptq",
          "sp24-magnitude",
          "sp24-wanda",
          "sp24-sparsegpt");
  private static final int EM_BATCH = 64;

  private CompressBench() {}

  record Options(
      Path teacher,
      int prompts,
      int pplPrompts,
      int samples,
      int group,
      double seconds,
      int threads,
      List<String> schemes,
      List<String> exclude) {

    static Options parse(String[] args) {
      Map<String, String> named = new LinkedHashMap<>();
      for (int i = 0; i < args.length; i++) {
        if (!args[i].startsWith("--") || i + 1 >= args.length) {
          throw new IllegalArgumentException("expected --name value pairs, got '" + args[i] + "'");
        }
        named.put(args[i].substring(2), args[++i]);
      }
      Options o =
          new Options(
              Path.of(named.getOrDefault("teacher", "/tmp/teacher-d")),
              Integer.parseInt(named.getOrDefault("prompts", "200")),
              Integer.parseInt(named.getOrDefault("ppl-prompts", "0")),
              Integer.parseInt(named.getOrDefault("samples", "512")),
              Integer.parseInt(named.getOrDefault("group", "0")),
              Double.parseDouble(named.getOrDefault("seconds", "2")),
              Integer.parseInt(named.getOrDefault("threads", "0")),
              List.of(named.getOrDefault("schemes", String.join(",", ALL)).split(",")),
              List.of(named.getOrDefault("exclude", "lm_head").split(",")));
      named
          .keySet()
          .removeAll(
              List.of(
                  "teacher",
                  "prompts",
                  "ppl-prompts",
                  "samples",
                  "group",
                  "seconds",
                  "threads",
                  "schemes",
                  "exclude"));
      if (!ALL.containsAll(o.schemes())) {
        throw new IllegalArgumentException(
            "--schemes: known schemes are " + ALL + ", got " + o.schemes());
      }
      if (!named.isEmpty()) {
        throw new IllegalArgumentException("unknown options " + named.keySet());
      }
      return o;
    }
  }

  /** One measured model. */
  record Row(
      String name,
      long linearBytes,
      double perplexity,
      double exactMatch,
      double klToDense,
      double stageSeconds) {}

  public static void main(String[] args) throws Exception {
    Options o = Options.parse(args);
    Engine engine = Engine.getEngine("PyTorch");
    if (o.threads() > 0) {
      JniUtils.setNumThreads(o.threads());
    }
    LlamaConfig config = LlamaConfig.read(o.teacher().resolve(LlamaConfig.FILE_NAME));
    int group = o.group() > 0 ? o.group() : largestGroup(config);
    List<TaskExample> test = TaskJsonl.read(o.teacher().resolve("test.jsonl"));
    List<TaskExample> emSet = test.subList(0, Math.min(o.prompts(), test.size()));
    List<TaskExample> pplSet =
        o.pplPrompts() > 0 ? test.subList(0, Math.min(o.pplPrompts(), test.size())) : test;
    System.out.printf(
        Locale.ROOT,
        "engine=%s threads=%d teacher=%s layers=%d hidden=%d intermediate=%d group=%d"
            + " exact_match_prompts=%d ppl_prompts=%d calibration_samples=%d%n",
        engine.getVersion(),
        JniUtils.getNumThreads(),
        o.teacher(),
        config.numHiddenLayers(),
        config.hiddenSize(),
        config.intermediateSize(),
        group,
        emSet.size(),
        pplSet.size(),
        o.samples());

    Path work = Files.createTempDirectory("compress-bench-");
    try {
      List<String> modules = compressedModules(config);
      long denseBytes = linearBytes(o.teacher(), modules);
      LlamaModel teacher = LlamaModel.load(o.teacher());
      Row dense = measure("dense (f32)", denseBytes, 0, o.teacher(), false, emSet, pplSet, null);
      {
        List<TaskExample> few = emSet.subList(0, Math.min(40, emSet.size()));
        int longest =
            few.stream()
                .mapToInt(e -> ByteTokenizer.instance().encode(e.answer()).length)
                .max()
                .orElse(0);
        System.out.printf(
            Locale.ROOT,
            "exact-match check on the teacher, first %d prompts: batched %.4f,"
                + " one at a time %.4f%n",
            few.size(),
            batchedExactMatch(teacher, ByteTokenizer.instance(), few, longest + 2),
            ExactMatch.score(teacher, ByteTokenizer.instance(), few, longest + 2));
      }
      print(null, null);
      print(dense, dense);

      long t0 = System.nanoTime();
      StageResult calib =
          new CalibratorStage()
              .run(
                  context(
                      work,
                      "calib",
                      o.teacher(),
                      new CalibratorParams(o.samples(), 256, "tasks", true, null, 0L),
                      List.of()));
      double calibSeconds = (System.nanoTime() - t0) / 1e9;
      StageContext.Input calibInput =
          input("calib", "calibrator", calib.outputs().getFirst().path(), CalibrationStats.FORMAT);
      System.out.printf(
          Locale.ROOT,
          "calibration: %.0f tokens in %.1f s (once, shared by every scheme)%n",
          calib.metrics().get("tokens"),
          calibSeconds);

      Map<String, Row> rows = new LinkedHashMap<>();
      for (String scheme : QUANT_SCHEMES) {
        if (!o.schemes().contains(scheme)) {
          continue;
        }
        // the streamed default is sequential; GPTQ also one-pass (every layer's Hessian from the
        // original model), to report the two side by side
        for (boolean sequential :
            scheme.equals("w4-gptq") ? new boolean[] {true, false} : new boolean[] {true}) {
          long s0 = System.nanoTime();
          StageResult r =
              new QuantizerStage()
                  .run(
                      context(
                          work,
                          scheme + (sequential ? "" : "-one-pass"),
                          o.teacher(),
                          new QuantizerParams(
                              scheme,
                              group,
                              null,
                              null,
                              null,
                              null,
                              o.exclude(),
                              null,
                              null,
                              null,
                              sequential,
                              null),
                          List.of(calibInput)));
          double seconds = (System.nanoTime() - s0) / 1e9;
          String name =
              (scheme.startsWith("w4") ? scheme + " g" + group : scheme)
                  + (sequential ? "" : " one-pass");
          // modules left out by --exclude stay F32 and still count
          long bytes =
              r.metrics().get("weight_bytes_after").longValue()
                  + denseBytes
                  - r.metrics().get("weight_bytes_before").longValue();
          Row row =
              measure(
                  name,
                  bytes,
                  seconds,
                  r.outputs().getFirst().path(),
                  true,
                  emSet,
                  pplSet,
                  teacher);
          rows.put(scheme + (sequential ? "" : "-one-pass"), row);
          print(row, dense);
        }
      }
      CalibrationStats calibStats =
          CalibrationStats.readArtefact(calib.outputs().getFirst().path());
      Map<String, Double> reconstruction = new LinkedHashMap<>();
      for (String method : PRUNE_METHODS) {
        if (!o.schemes().contains("sp24-" + method)) {
          continue;
        }
        List<StageContext.Input> inputs =
            method.equals("magnitude") ? List.of() : List.of(calibInput);
        // calibrated methods sequential (the default) and one-pass, side by side
        for (boolean sequential :
            method.equals("magnitude") ? new boolean[] {true} : new boolean[] {true, false}) {
          long s0 = System.nanoTime();
          StageResult r =
              new PrunerStage()
                  .run(
                      context(
                          work,
                          "prune-" + method + (sequential ? "" : "-one-pass"),
                          o.teacher(),
                          new PrunerParams(
                              method,
                              null,
                              "2:4",
                              null,
                              null,
                              null,
                              null,
                              null,
                              null,
                              sequential,
                              null),
                          inputs));
          double seconds = (System.nanoTime() - s0) / 1e9;
          // the checkpoint stays dense F32: 2:4 halves the math on sparse tensor cores, not these
          // bytes
          Row row =
              measure(
                  "2:4 " + method + (sequential ? "" : " one-pass"),
                  denseBytes,
                  seconds,
                  r.outputs().getFirst().path(),
                  false,
                  emSet,
                  pplSet,
                  teacher);
          rows.put("sp24-" + method + (sequential ? "" : "-one-pass"), row);
          print(row, dense);
          if (sequential) {
            reconstruction.put(
                method, layerError(teacher, r.outputs().getFirst().path(), calibStats, modules));
          }
        }
      }
      if (!reconstruction.isEmpty()) {
        System.out.print(
            "2:4 layer-wise output error sum ||(W - W_pruned) X||^2 / sum ||W X||^2 on the calibration"
                + " tokens (what Wanda and SparseGPT minimise, each layer alone):");
        reconstruction.forEach((m, e) -> System.out.printf(Locale.ROOT, " %s %.4f", m, e));
        System.out.println();
      }

      Throughput tp = throughput(o.teacher(), modules, o.seconds());
      double w8StageGbs =
          rows.containsKey("w8-rtn")
              ? denseBytes / 1e9 / rows.get("w8-rtn").stageSeconds()
              : Double.NaN;
      System.out.printf(
          Locale.ROOT,
          "throughput over %.1f MB of f32 linear weights, single thread: read %.2f GB/s,"
              + " w8-rtn quantize %.2f GB/s (%.2fx the read time); whole w8-rtn stage (read, quantize, write)"
              + " %.3f GB/s%n",
          denseBytes / 1e6,
          tp.readGbs(),
          tp.quantGbs(),
          tp.readGbs() / tp.quantGbs(),
          w8StageGbs);

      Map<String, Double> ratio = new LinkedHashMap<>();
      ALL.forEach(k -> ratio.put(k, Double.NaN));
      rows.forEach((k, v) -> ratio.put(k, v.perplexity() / dense.perplexity()));
      Map<String, Double> kl = new LinkedHashMap<>();
      for (String k : List.of("w4-gptq", "sp24-sparsegpt")) {
        for (String key : List.of(k, k + "-one-pass")) {
          ratio.putIfAbsent(key, Double.NaN);
          kl.put(key, rows.containsKey(key) ? rows.get(key).klToDense() : Double.NaN);
        }
      }
      printTargets(ratio, group);
      System.out.printf(
          Locale.ROOT,
          "compress w8_ppl_ratio=%.4f w8a8_ppl_ratio=%.4f fp8_ppl_ratio=%.4f"
              + " w4_rtn_ppl_ratio=%.4f w4_awq_ppl_ratio=%.4f w4_gptq_ppl_ratio=%.4f sp24_mag_ppl_ratio=%.4f"
              + " sp24_wanda_ppl_ratio=%.4f sp24_sparsegpt_ppl_ratio=%.4f w8_quant_gb_s=%.3f read_gb_s=%.3f"
              + " w4_gptq_one_pass_ppl_ratio=%.4f sp24_sparsegpt_one_pass_ppl_ratio=%.4f"
              + " w4_gptq_kl=%.3e w4_gptq_one_pass_kl=%.3e sp24_sparsegpt_kl=%.3e"
              + " sp24_sparsegpt_one_pass_kl=%.3e%n",
          ratio.get("w8-rtn"),
          ratio.get("w8a8-smoothquant"),
          ratio.get("fp8"),
          ratio.get("w4-rtn"),
          ratio.get("w4-awq"),
          ratio.get("w4-gptq"),
          ratio.get("sp24-magnitude"),
          ratio.get("sp24-wanda"),
          ratio.get("sp24-sparsegpt"),
          tp.quantGbs(),
          tp.readGbs(),
          ratio.get("w4-gptq-one-pass"),
          ratio.get("sp24-sparsegpt-one-pass"),
          kl.get("w4-gptq"),
          kl.get("w4-gptq-one-pass"),
          kl.get("sp24-sparsegpt"),
          kl.get("sp24-sparsegpt-one-pass"));
      teacher.close();
    } finally {
      deleteTree(work);
    }
  }

  /**
   * sum over modules of ||(W - W') X||_F^2 = tr(E G E^T) (E = W - W', G = X^T X from the
   * calibration), divided by the same sum for W itself: each layer's output error on the
   * calibration inputs of the dense model.
   */
  static double layerError(
      LlamaModel dense, Path pruned, CalibrationStats stats, List<String> modules)
      throws IOException {
    double err = 0;
    double ref = 0;
    try (LlamaModel model = LlamaModel.load(pruned);
        NDManager manager = NDManager.newBaseManager("PyTorch")) {
      for (String module : modules) {
        LayerStats layer = stats.layer(module);
        int n = layer.inFeatures();
        float[] w = dense.linearWeight(module);
        float[] wp = model.linearWeight(module);
        float[] e = new float[w.length];
        for (int i = 0; i < w.length; i++) {
          e[i] = w[i] - wp[i];
        }
        try (NDManager scope = manager.newSubManager()) {
          NDArray g = scope.create(layer.gram(), new Shape(n, n));
          NDArray we = scope.create(e, new Shape(w.length / n, n)).toType(DataType.FLOAT64, false);
          NDArray ww = scope.create(w, new Shape(w.length / n, n)).toType(DataType.FLOAT64, false);
          err += we.matMul(g).mul(we).sum().getDouble();
          ref += ww.matMul(g).mul(ww).sum().getDouble();
        }
      }
    }
    return err / ref;
  }

  private static void printTargets(Map<String, Double> r, int group) {
    double mag = r.get("sp24-magnitude") - 1;
    List<String> lines =
        List.of(
            check("w8-rtn ppl <= +0.5%", r.get("w8-rtn") <= 1.005),
            check("w8a8-smoothquant ppl <= +0.5%", r.get("w8a8-smoothquant") <= 1.005),
            check("w4-gptq ppl <= +3%", r.get("w4-gptq") <= 1.03),
            check("w4-awq ppl <= +3%", r.get("w4-awq") <= 1.03),
            check(
                "w4-gptq better than w4-rtn (g" + group + ")", r.get("w4-gptq") < r.get("w4-rtn")),
            check("w4-awq better than w4-rtn (g" + group + ")", r.get("w4-awq") < r.get("w4-rtn")),
            check(
                "2:4 wanda at least 2x closer to dense than 2:4 magnitude",
                r.get("sp24-wanda") - 1 <= mag / 2),
            check(
                "2:4 sparsegpt at least 2x closer to dense than 2:4 magnitude",
                r.get("sp24-sparsegpt") - 1 <= mag / 2));
    lines.forEach(System.out::println);
  }

  private static String check(String target, boolean met) {
    return String.format(Locale.ROOT, "target %-62s %s", target, met ? "MET" : "MISSED or not run");
  }

  private static void print(Row row, Row dense) {
    if (row == null) {
      System.out.printf(
          Locale.ROOT,
          "%-22s %12s %7s %9s %9s %8s %8s %10s %8s%n",
          "scheme",
          "linear_bytes",
          "x_bytes",
          "ppl",
          "ppl_ratio",
          "exact",
          "em_ratio",
          "kl_dense",
          "stage_s");
      return;
    }
    System.out.printf(
        Locale.ROOT,
        "%-22s %12d %7.3f %9.5f %9.4f %8.4f %8.4f %10.2e %8.1f%n",
        row.name(),
        row.linearBytes(),
        (double) row.linearBytes() / dense.linearBytes(),
        row.perplexity(),
        row.perplexity() / dense.perplexity(),
        row.exactMatch(),
        dense.exactMatch() == 0 ? Double.NaN : row.exactMatch() / dense.exactMatch(),
        row.klToDense(),
        row.stageSeconds());
  }

  private static Row measure(
      String name,
      long bytes,
      double stageSeconds,
      Path checkpoint,
      boolean compressed,
      List<TaskExample> emSet,
      List<TaskExample> pplSet,
      LlamaModel dense)
      throws IOException {
    ByteTokenizer tokenizer = ByteTokenizer.instance();
    try (LlamaModel model =
        compressed ? CompressedTensors.loadDequantized(checkpoint) : LlamaModel.load(checkpoint)) {
      double kl = dense == null ? 0 : klToDense(dense, model, tokenizer, pplSet);
      double ppl = Perplexity.evaluate(model, tokenizer, pplSet).perplexity();
      int longest = 0;
      for (TaskExample e : emSet) {
        longest = Math.max(longest, tokenizer.encode(e.answer()).length);
      }
      double em = batchedExactMatch(model, tokenizer, emSet, longest + 2);
      return new Row(name, bytes, ppl, em, kl, stageSeconds);
    }
  }

  /**
   * {@link ExactMatch#score} with prompts of equal token length decoded together: one batched
   * greedy KV-cached decode per length (up to {@value #EM_BATCH} rows), the same answers as one
   * prompt at a time (same argmax, same stop at {@code </s>}, same rule for generations cut at the
   * limit) up to float summation order, in a fraction of the time.
   */
  static double batchedExactMatch(
      LlamaModel model, ByteTokenizer tokenizer, List<TaskExample> examples, int maxNewTokens) {
    Map<Integer, List<Integer>> byLength = new TreeMap<>();
    List<int[]> prompts = new ArrayList<>();
    for (int i = 0; i < examples.size(); i++) {
      int[] ids = tokenizer.encode(examples.get(i).prompt(), true, false);
      prompts.add(ids);
      byLength.computeIfAbsent(ids.length, k -> new ArrayList<>()).add(i);
    }
    int correct = 0;
    for (List<Integer> sameLength : byLength.values()) {
      for (int from = 0; from < sameLength.size(); from += EM_BATCH) {
        List<Integer> rows = sameLength.subList(from, Math.min(sameLength.size(), from + EM_BATCH));
        int[][] ids = new int[rows.size()][];
        for (int b = 0; b < ids.length; b++) {
          ids[b] = prompts.get(rows.get(b));
        }
        int[][] generated = greedy(model, ids, maxNewTokens);
        for (int b = 0; b < ids.length; b++) {
          int end = 0;
          while (end < generated[b].length && generated[b][end] != ByteTokenizer.EOS_ID) {
            end++;
          }
          if (tokenizer
              .decode(Arrays.copyOf(generated[b], end))
              .equals(examples.get(rows.get(b)).answer())) {
            correct++;
          }
        }
      }
    }
    return examples.isEmpty() ? 0 : (double) correct / examples.size();
  }

  /**
   * Greedy continuation of equal-length prompts, {@code maxNewTokens} each (rows past {@code </s>}
   * keep going).
   */
  private static int[][] greedy(LlamaModel model, int[][] prompts, int maxNewTokens) {
    int batch = prompts.length;
    int vocab = model.config().vocabSize();
    int[][] out = new int[batch][maxNewTokens];
    boolean[] done = new boolean[batch];
    try (NDManager call = model.manager().newSubManager();
        KvCache cache = model.newKvCache()) {
      NDArray logits = model.forward(call, prompts, cache);
      int positions = Math.toIntExact(logits.getShape().get(1));
      for (int step = 0; step < maxNewTokens; step++) {
        float[] all = logits.toFloatArray();
        logits.close();
        int[][] next = new int[batch][1];
        int finished = 0;
        for (int b = 0; b < batch; b++) {
          int offset = ((b + 1) * positions - 1) * vocab;
          int best = offset;
          for (int v = offset + 1; v < offset + vocab; v++) {
            if (all[v] > all[best]) {
              best = v;
            }
          }
          next[b][0] = best - offset;
          out[b][step] = next[b][0];
          done[b] |= next[b][0] == ByteTokenizer.EOS_ID;
          finished += done[b] ? 1 : 0;
        }
        if (finished == batch || step == maxNewTokens - 1) {
          break;
        }
        logits = model.forward(call, next, cache);
        positions = 1;
      }
    }
    return out;
  }

  /**
   * Mean KL(dense || compressed) of the next-token distributions at the answer positions (nats per
   * token): how far the compressed model's predictions moved, even where the argmax and the
   * answer's likelihood barely do.
   */
  static double klToDense(
      LlamaModel dense, LlamaModel model, ByteTokenizer tokenizer, List<TaskExample> examples) {
    double kl = 0;
    long tokens = 0;
    for (int from = 0; from < examples.size(); from += EM_BATCH) {
      TaskBatch batch =
          TaskBatch.of(
              examples.subList(from, Math.min(examples.size(), from + EM_BATCH)), tokenizer);
      try (NDManager scope = model.manager().newSubManager()) {
        NDArray p = dense.forward(scope, batch.inputs()).logSoftmax(-1);
        NDArray q = model.forward(scope, batch.inputs()).logSoftmax(-1);
        NDArray perPosition = p.exp().mul(p.sub(q)).sum(new int[] {-1});
        NDArray mask = scope.create(batch.mask(), new Shape(batch.size(), batch.length()));
        kl += perPosition.mul(mask).sum().getFloat();
        tokens += batch.answerTokens();
      }
    }
    return kl / tokens;
  }

  record Throughput(double readGbs, double quantGbs) {}

  private static final ValueLayout.OfFloat F32_LE =
      ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

  /**
   * Reading the F32 linear weights into float[] vs INT8 per-channel quantizing them, each for
   * {@code seconds}.
   */
  private static Throughput throughput(Path teacher, List<String> modules, double seconds)
      throws IOException {
    Map<String, long[]> shapes = new LinkedHashMap<>();
    Map<String, float[]> weights = new LinkedHashMap<>();
    long bytes = 0;
    try (Checkpoint checkpoint = Checkpoint.open(teacher)) {
      for (String m : modules) {
        String name = LlamaTensorNames.weight(m);
        shapes.put(m, checkpoint.info(name).shape());
        weights.put(m, checkpoint.floats(name));
        bytes += checkpoint.info(name).byteSize();
      }
      double sink = 0;
      long passes = 0;
      long start = System.nanoTime();
      long deadline = start + (long) (seconds * 1e9);
      do {
        for (String m : modules) {
          // the same little-endian F32 bytes into the float[] the quantizer reads (no allocation)
          float[] w = weights.get(m);
          MemorySegment.copy(
              checkpoint.segment(LlamaTensorNames.weight(m)), F32_LE, 0, w, 0, w.length);
          sink += w[w.length - 1];
        }
        passes++;
      } while (System.nanoTime() < deadline);
      double read = bytes * passes / ((System.nanoTime() - start) / 1e9) / 1e9;

      passes = 0;
      start = System.nanoTime();
      deadline = start + (long) (seconds * 1e9);
      do {
        for (String m : modules) {
          long[] s = shapes.get(m);
          QuantizedWeight q = GroupQuantizer.int8PerChannel(weights.get(m), (int) s[0], (int) s[1]);
          sink += q.scales()[0];
        }
        passes++;
      } while (System.nanoTime() < deadline);
      double quant = bytes * passes / ((System.nanoTime() - start) / 1e9) / 1e9;
      if (Double.isNaN(sink)) {
        System.out.println("(checksum NaN)");
      }
      return new Throughput(read, quant);
    }
  }

  /** The modules the quantizer compresses by default: every linear layer but lm_head. */
  private static List<String> compressedModules(LlamaConfig config) {
    return LlamaTensorNames.linearModules(config).stream()
        .filter(m -> !m.equals(LlamaTensorNames.LM_HEAD_MODULE))
        .toList();
  }

  private static long linearBytes(Path teacher, List<String> modules) throws IOException {
    long bytes = 0;
    try (Checkpoint checkpoint = Checkpoint.open(teacher)) {
      for (String m : modules) {
        bytes += checkpoint.info(LlamaTensorNames.weight(m)).byteSize();
      }
    }
    return bytes;
  }

  /**
   * The largest of 128, 64, 32, 16, 8 dividing every linear input width (128 for the teacher; 16
   * for a 688-wide down_proj).
   */
  static int largestGroup(LlamaConfig config) {
    for (int g : new int[] {128, 64, 32, 16, 8}) {
      if (config.hiddenSize() % g == 0
          && config.intermediateSize() % g == 0
          && config.attentionWidth() % g == 0) {
        return g;
      }
    }
    throw new IllegalArgumentException(
        "no group size in {128, 64, 32, 16, 8} divides hidden "
            + config.hiddenSize()
            + " and intermediate "
            + config.intermediateSize()
            + "; pass --group");
  }

  private static <P extends Record> StageContext<P> context(
      Path work, String node, Path model, P params, List<StageContext.Input> inputs)
      throws IOException {
    Path scratch = Files.createDirectories(work.resolve(node));
    ArtefactRef ref =
        ArtefactRef.newBuilder()
            .setUri(model.toUri().toString())
            .setSha256("bench")
            .setBytes(0L)
            .setFormat("hf-llama")
            .build();
    StageJob job =
        StageJob.newBuilder()
            .setRunId("bench")
            .setJobId("bench/" + node)
            .setAttempt(1)
            .setStage(node)
            .setNode(node)
            .setParams("{}")
            .setModel(ref)
            .setTimeoutMs(0L)
            .setDispatchedAt(Instant.now())
            .build();
    return new StageContext<>(
        job, params, model, inputs, scratch, scratch, (percent, message, metrics) -> {});
  }

  private static void deleteTree(Path root) {
    try {
      FileTrees.delete(root);
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }
}
