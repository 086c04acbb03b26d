package io.distillery.bench;

import static io.distillery.bench.BenchArtefacts.input;
import static io.distillery.bench.BenchArtefacts.ref;

import ai.djl.engine.Engine;
import ai.djl.pytorch.jni.JniUtils;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.distillery.calibrator.CalibratorParams;
import io.distillery.calibrator.CalibratorStage;
import io.distillery.distiller.DistillerParams;
import io.distillery.distiller.DistillerParams.Student;
import io.distillery.distiller.DistillerStage;
import io.distillery.distiller.student.StudentInit;
import io.distillery.evaluator.EvaluatorParams;
import io.distillery.evaluator.EvaluatorStage;
import io.distillery.evaluator.report.EvaluationReport;
import io.distillery.model.calib.CalibrationStats;
import io.distillery.model.config.LlamaConfig;
import io.distillery.model.config.LlamaTensorNames;
import io.distillery.model.llama.LlamaModel;
import io.distillery.model.quant.CompressedTensors;
import io.distillery.model.safetensors.Checkpoint;
import io.distillery.model.safetensors.TensorInfo;
import io.distillery.model.tasks.TaskExample;
import io.distillery.model.tasks.TaskJsonl;
import io.distillery.pruner.PrunerParams;
import io.distillery.pruner.PrunerStage;
import io.distillery.quantizer.QuantizerParams;
import io.distillery.quantizer.QuantizerStage;
import io.distillery.schemas.job.StageJob;
import io.distillery.stage.ArtefactFormats;
import io.distillery.stage.FileTrees;
import io.distillery.stage.Stage;
import io.distillery.stage.StageContext;
import io.distillery.stage.StageParams;
import io.distillery.stage.StageResult;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Instant;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;

/**
 * bench/pipeline: the default recipe's shape (recipes/demo.yaml: distill -> calibrate -> prune ->
 * quantize -> evaluate) run on one teacher through the workers' {@link Stage} code, in-process and
 * in the recipe's order, each stage handed the upstream outputs the planner would hand it (the
 * pruner and the quantizer transform the distilled student, with the calibration of that student).
 * It answers one question: how many times fewer weight bytes than the teacher does the composed
 * pipeline end with, and how much of the teacher's exact match does it keep on the teacher's own
 * held-out prompts.
 *
 * <p>Data: the distiller trains on {@code --samples} task prompts drawn as the teacher's training
 * data was (its task settings and train mix, as bench/distill draws them), none of them one of the
 * teacher's held-out {@code test.jsonl} or {@code validation.jsonl} prompts; they reach the stage
 * as its {@code dataset} param (a JSONL file), and the calibrator gets the same file as a {@code
 * dataset} input. The stage's own {@code source: tasks} draws an equal mix with no regard to the
 * teacher's held-out prompts, so scoring on them afterwards would flatter the student.
 *
 * <p>Student: the quarter-size shape of bench/distill ({@link DistillBench#shapeFor}: every layer,
 * sqrt(size) of the heads and width, the widest MLP within the budget) with the MLP width rounded
 * down to a multiple of the quantizer's group, since every quantized layer's input width must be
 * one. Bytes are the weight files on disk ({@code *.safetensors}, as the evaluator counts them:
 * every tensor in the dtype stored, embeddings, lm_head, norms, scales, zero points and headers
 * included). Retention = the final model's exact match / the teacher's, both measured by the
 * evaluator stage on the same first {@code --eval} prompts of the teacher's {@code test.jsonl}; the
 * distilled and pruned checkpoints are passed to the evaluator as candidates too, so every stage
 * that changes the model is scored on the same prompts.
 *
 * <p>Args: {@code --teacher DIR} (required, with test.jsonl) and optionally {@code --size F}
 * (0.25), {@code --steps N} (1500), {@code --batch N} (32), {@code --lr X} (1.5e-3), {@code --T X}
 * (2), {@code --alpha X} (0.7), {@code --topk K} (64), {@code --samples N} (50000), {@code --eval
 * N} (1000), {@code --calib-samples N} (128), {@code --prune METHOD} (wanda), {@code --sparsity X}
 * (0.25), {@code --pattern unstructured|2:4}, {@code --scheme S} (w4-gptq), {@code --group G} (32),
 * {@code --seed N} (7), {@code --threads N} (1), {@code --dir D} (work directory, kept; the
 * teacher's top-k logits are cached under it and read back by the next run with the same teacher
 * and data; default a temporary directory, deleted).
 *
 * <p>One {@code pipeline_stage} line per stage, then {@code pipeline teacher_params=N
 * teacher_bytes=N final_bytes=N size_ratio=X teacher_em=X final_em=X retention=X}.
 */
public final class PipelineBench {

  private static final ObjectMapper JSON = new ObjectMapper();

  private PipelineBench() {}

  /** The command line, defaulted. */
  record Options(
      Path teacher,
      double size,
      int steps,
      int batch,
      double lr,
      double temperature,
      double alpha,
      int topK,
      int samples,
      int eval,
      int calibSamples,
      String prune,
      double sparsity,
      String pattern,
      String scheme,
      int group,
      long seed,
      int threads,
      Path dir) {

    static Options parse(String[] args) {
      Map<String, String> a = new LinkedHashMap<>();
      for (int i = 0; i < args.length; i += 2) {
        if (!args[i].startsWith("--") || i + 1 >= args.length) {
          throw new IllegalArgumentException(
              "expected --name value pairs, got '" + args[i] + "'; " + USAGE);
        }
        a.put(args[i].substring(2), args[i + 1]);
      }
      if (!a.containsKey("teacher")) {
        throw new IllegalArgumentException("--teacher DIR is required; " + USAGE);
      }
      Options o =
          new Options(
              Path.of(a.remove("teacher")),
              Double.parseDouble(take(a, "size", "0.25")),
              Integer.parseInt(take(a, "steps", "1500")),
              Integer.parseInt(take(a, "batch", "32")),
              Double.parseDouble(take(a, "lr", "1.5e-3")),
              Double.parseDouble(take(a, "T", "2")),
              Double.parseDouble(take(a, "alpha", "0.7")),
              Integer.parseInt(take(a, "topk", "64")),
              Integer.parseInt(take(a, "samples", "50000")),
              Integer.parseInt(take(a, "eval", "1000")),
              Integer.parseInt(take(a, "calib-samples", "128")),
              take(a, "prune", "wanda"),
              Double.parseDouble(take(a, "sparsity", "0.25")),
              take(a, "pattern", "unstructured"),
              take(a, "scheme", "w4-gptq"),
              Integer.parseInt(take(a, "group", "32")),
              Long.parseLong(take(a, "seed", "7")),
              Integer.parseInt(take(a, "threads", "1")),
              a.containsKey("dir") ? Path.of(a.remove("dir")) : null);
      if (!a.isEmpty()) {
        throw new IllegalArgumentException("unknown options " + a.keySet() + "; " + USAGE);
      }
      if (!(o.size() > 0 && o.size() <= 1)) {
        throw new IllegalArgumentException("--size must be in (0, 1], got " + o.size());
      }
      if (o.group() <= 0) {
        throw new IllegalArgumentException("--group must be positive, got " + o.group());
      }
      if (o.eval() <= 0) {
        throw new IllegalArgumentException("--eval must be positive, got " + o.eval());
      }
      return o;
    }

    private static String take(Map<String, String> a, String key, String fallback) {
      String v = a.remove(key);
      return v == null ? fallback : v;
    }
  }

  static final String USAGE =
      "usage: bench/pipeline --teacher DIR [--size F] [--steps N] [--batch N] [--lr X] [--T X]"
          + " [--alpha X] [--topk K] [--samples N] [--eval N] [--calib-samples N] [--prune METHOD]"
          + " [--sparsity X] [--pattern unstructured|2:4] [--scheme S] [--group G] [--seed N]"
          + " [--threads N] [--dir D]";

  /** One stage's line: wall seconds, weight bytes of its output model, exact match if scored. */
  record StageLine(String stage, double seconds, long bytes, double exactMatch, String note) {}

  /** What the run measured; the last line is made of it. */
  record Result(
      long teacherParams,
      long teacherBytes,
      long finalBytes,
      double teacherEm,
      double finalEm,
      Path finalCheckpoint,
      List<StageLine> stages) {

    double sizeRatio() {
      return (double) teacherBytes / finalBytes;
    }

    double retention() {
      return teacherEm == 0 ? Double.NaN : finalEm / teacherEm;
    }

    String line() {
      return String.format(
          Locale.ROOT,
          "pipeline teacher_params=%d teacher_bytes=%d final_bytes=%d size_ratio=%.2f"
              + " teacher_em=%.4f final_em=%.4f retention=%.4f",
          teacherParams,
          teacherBytes,
          finalBytes,
          sizeRatio(),
          teacherEm,
          finalEm,
          retention());
    }
  }

  public static void main(String[] args) throws Exception {
    Options o = Options.parse(args);
    Engine engine = Engine.getEngine("PyTorch");
    if (o.threads() > 0) {
      JniUtils.setNumThreads(o.threads());
    }
    System.out.printf(
        Locale.ROOT, "engine=%s threads=%d%n", engine.getVersion(), JniUtils.getNumThreads());
    Path dir = o.dir() != null ? Files.createDirectories(o.dir()) : null;
    Path work = dir != null ? dir : Files.createTempDirectory("pipeline-bench-");
    try {
      Result r = run(o, work, System.out);
      System.out.println(r.line());
    } finally {
      if (dir == null) {
        FileTrees.delete(work);
      }
    }
  }

  /** The student shape: bench/distill's for {@code size}, its MLP a multiple of {@code group}. */
  static Student studentShape(LlamaConfig teacher, double size, int group) {
    Student s = size >= 1 ? full(teacher) : DistillBench.shapeFor(teacher, size);
    int intermediate = s.intermediate() / group * group;
    if (intermediate == 0) {
      throw new IllegalArgumentException(
          "the student's MLP width "
              + s.intermediate()
              + " at size "
              + size
              + " holds no group of "
              + group
              + " columns: lower --group or raise --size");
    }
    if (s.hidden() % group != 0 || (s.hidden() / s.heads() * s.heads()) % group != 0) {
      throw new IllegalArgumentException(
          "the student's hidden width "
              + s.hidden()
              + " is not a multiple of the quantizer group "
              + group
              + ": lower --group");
    }
    return new Student(s.layers(), s.hidden(), s.heads(), s.kvHeads(), intermediate);
  }

  private static Student full(LlamaConfig c) {
    return new Student(
        c.numHiddenLayers(),
        c.hiddenSize(),
        c.numAttentionHeads(),
        c.numKeyValueHeads(),
        c.intermediateSize());
  }

  static Result run(Options o, Path work, PrintStream out) throws Exception {
    Path teacher = o.teacher();
    Path testFile = teacher.resolve("test.jsonl");
    if (!Files.isRegularFile(teacher.resolve(LlamaConfig.FILE_NAME))
        || !Files.isRegularFile(testFile)) {
      throw new IllegalArgumentException(
          "--teacher "
              + teacher
              + " must be a teacher checkpoint with config.json and its held-out test.jsonl"
              + " (./distillery teacher --out DIR writes one)");
    }
    long began = System.nanoTime();
    LlamaConfig config = LlamaConfig.read(teacher.resolve(LlamaConfig.FILE_NAME));
    Student student = studentShape(config, o.size(), o.group());
    long teacherParams = LlamaTensorNames.parameterCount(config);
    long studentParams =
        LlamaTensorNames.parameterCount(StudentInit.studentConfig(config, student));
    List<TaskExample> test = TaskJsonl.read(testFile);
    Set<String> held = new HashSet<>();
    test.forEach(e -> held.add(e.prompt()));
    Path validationFile = teacher.resolve("validation.jsonl");
    if (Files.isRegularFile(validationFile)) {
      TaskJsonl.read(validationFile).forEach(e -> held.add(e.prompt()));
    }
    List<TaskExample> train =
        DistillBench.trainingExamples(
            Map.of(), teacher, test, o.samples(), o.seed(), Set.copyOf(held));
    Path data = Files.createDirectories(work.resolve("data")).resolve("train.jsonl");
    TaskJsonl.write(data, train);
    out.printf(
        Locale.ROOT,
        "teacher=%s params=%d layers=%d hidden=%d intermediate=%d; student %d,%d,%d,%d,%d"
            + " params=%d (%.4f of the teacher); %d training prompts (none held out); eval on the"
            + " first %d of %d held-out prompts%n",
        teacher,
        teacherParams,
        config.numHiddenLayers(),
        config.hiddenSize(),
        config.intermediateSize(),
        student.layers(),
        student.hidden(),
        student.heads(),
        student.kvHeads(),
        student.intermediate(),
        studentParams,
        (double) studentParams / teacherParams,
        train.size(),
        Math.min(o.eval(), test.size()),
        test.size());
    StageContext.Input dataset = input("$run", "dataset", data, "dataset");

    // distill: the recipe's distiller with bench/distill's schedule (no early stop)
    ObjectNode dp = JSON.createObjectNode();
    ObjectNode shape = dp.putObject("student");
    shape.put("layers", student.layers());
    shape.put("hidden", student.hidden());
    shape.put("heads", student.heads());
    shape.put("kvHeads", student.kvHeads());
    shape.put("intermediate", student.intermediate());
    dp.put("dataset", data.toString());
    dp.put("steps", o.steps());
    dp.put("batch", o.batch());
    dp.put("seqLen", 128);
    dp.put("lr", o.lr());
    dp.put("warmup", Math.max(1, o.steps() / 20));
    dp.put("temperature", o.temperature());
    dp.put("alpha", o.alpha());
    dp.put("topK", o.topK());
    dp.put("seed", o.seed());
    dp.put("evalEvery", o.steps());
    dp.put("patience", 1000);
    dp.put("progressEvery", Math.max(1, o.steps() / 10));
    out.println("distill params " + dp);
    List<StageLine> lines = new ArrayList<>();
    Timed<StageResult> distill =
        timed(
            () ->
                new DistillerStage()
                    .run(
                        context(
                            work,
                            "distill",
                            teacher,
                            StageParams.bind("distiller", dp.toString(), DistillerParams.class),
                            List.of(),
                            out)));
    Path distilled = distill.value().outputs().getFirst().path();
    StageContext.Input distillIn = input("distill", "distiller", distilled, DistillerStage.FORMAT);
    out.printf(
        Locale.ROOT,
        "distill: %s%n",
        new TreeMap<>(distill.value().metrics()).toString().replace(", ", " "));

    // calibrate the student on training prompts (the teacher's held-out prompts stay unseen)
    CalibratorParams cp =
        new CalibratorParams(
            o.calibSamples(), 256, CalibratorParams.SOURCE_DATASET, true, null, 0L);
    Timed<StageResult> calib =
        timed(
            () ->
                new CalibratorStage()
                    .run(context(work, "calib", teacher, cp, List.of(distillIn, dataset), out)));
    Path calibration = calib.value().outputs().getFirst().path();
    StageContext.Input calibIn = input("calib", "calibrator", calibration, CalibrationStats.FORMAT);

    ObjectNode pp = JSON.createObjectNode();
    pp.put("method", o.prune());
    if (o.pattern().equals("unstructured")) {
      pp.put("sparsity", o.sparsity());
    } else {
      pp.put("pattern", o.pattern());
    }
    out.println("prune params " + pp);
    PrunerParams prunerParams = StageParams.bind("pruner", pp.toString(), PrunerParams.class);
    Timed<StageResult> prune =
        timed(
            () ->
                new PrunerStage()
                    .run(
                        context(
                            work,
                            "prune",
                            teacher,
                            prunerParams,
                            List.of(distillIn, calibIn),
                            out)));
    Path pruned = prune.value().outputs().getFirst().path();
    StageContext.Input pruneIn = input("prune", "pruner", pruned, PrunerStage.FORMAT);

    ObjectNode qp = JSON.createObjectNode();
    qp.put("scheme", o.scheme());
    qp.put("groupSize", o.group());
    out.println("quantize params " + qp);
    QuantizerParams quantizerParams =
        StageParams.bind("quantizer", qp.toString(), QuantizerParams.class);
    Timed<StageResult> quant =
        timed(
            () ->
                new QuantizerStage()
                    .run(
                        context(
                            work,
                            "quant",
                            teacher,
                            quantizerParams,
                            List.of(pruneIn, calibIn),
                            out)));
    Path quantized = quant.value().outputs().getFirst().path();
    StageContext.Input quantIn =
        input("quant", "quantizer", quantized, quant.value().outputs().getFirst().format());

    // evaluate: the recipe scores the quantized student; the distilled and pruned checkpoints
    // ride along as candidates so that every stage is scored on the same prompts
    ObjectNode ep = JSON.createObjectNode();
    ep.put("samples", o.eval());
    ep.put("pick", "smallest-passing");
    EvaluatorParams evaluatorParams =
        StageParams.bind("evaluator", ep.toString(), EvaluatorParams.class);
    Timed<StageResult> eval =
        timed(
            () ->
                new EvaluatorStage()
                    .run(
                        context(
                            work,
                            "eval",
                            teacher,
                            evaluatorParams,
                            List.of(distillIn, pruneIn, quantIn),
                            out)));
    Path reportDir =
        eval.value().outputs().stream()
            .filter(x -> x.format().equals(EvaluationReport.FORMAT))
            .findFirst()
            .orElseThrow()
            .path();
    JsonNode report = JSON.readTree(reportDir.resolve(EvaluationReport.JSON_FILE).toFile());
    JsonNode reference = report.get("reference");
    Map<String, JsonNode> byName = new LinkedHashMap<>();
    report.get("candidates").forEach(c -> byName.put(c.get("name").asText(), c));
    long teacherBytes = reference.get("weightBytes").asLong();
    double teacherEm = reference.get("exactMatch").asDouble();

    lines.add(
        new StageLine(
            "teacher",
            0,
            teacherBytes,
            teacherEm,
            "params=" + teacherParams + " dtype=" + dtypes(teacher)));
    lines.add(
        new StageLine(
            "distill",
            distill.seconds(),
            byName.get("distill").get("weightBytes").asLong(),
            byName.get("distill").get("exactMatch").asDouble(),
            String.format(
                Locale.ROOT,
                "params=%d steps=%.0f tokens=%.0f teacher_cache=%s dtype=%s",
                byName.get("distill").get("parameters").asLong(),
                distill.value().metrics().getOrDefault("steps", Double.NaN),
                distill.value().metrics().getOrDefault("tokens", Double.NaN),
                cacheNote(distill.value().metrics()),
                dtypes(distilled))));
    lines.add(
        new StageLine(
            "calibrate",
            calib.seconds(),
            byName.get("distill").get("weightBytes").asLong(),
            Double.NaN,
            String.format(
                Locale.ROOT,
                "samples=%d tokens=%.0f (statistics only; the model is unchanged)",
                o.calibSamples(),
                calib.value().metrics().getOrDefault("tokens", Double.NaN))));
    lines.add(
        new StageLine(
            "prune",
            prune.seconds(),
            byName.get("prune").get("weightBytes").asLong(),
            byName.get("prune").get("exactMatch").asDouble(),
            String.format(
                Locale.ROOT,
                "%s zeros=%.4f dtype=%s (zeros are stored as dense values)",
                pp,
                zeroFraction(pruned),
                dtypes(pruned))));
    lines.add(
        new StageLine(
            "quantize",
            quant.seconds(),
            byName.get("quant").get("weightBytes").asLong(),
            byName.get("quant").get("exactMatch").asDouble(),
            String.format(
                Locale.ROOT,
                "%s zeros=%.4f %s",
                qp,
                zeroFraction(quantized),
                breakdown(quantized))));
    lines.add(
        new StageLine(
            "evaluate",
            eval.seconds(),
            byName.get("quant").get("weightBytes").asLong(),
            byName.get("quant").get("exactMatch").asDouble(),
            "prompts="
                + report.get("examples").asInt()
                + " from "
                + report.get("dataSource").asText()
                + " chosen="
                + report.get("chosen").asText()));
    for (StageLine l : lines) {
      out.printf(
          Locale.ROOT,
          "pipeline_stage stage=%s seconds=%.1f bytes=%d x_teacher_bytes=%.4f em=%s %s%n",
          l.stage(),
          l.seconds(),
          l.bytes(),
          (double) l.bytes() / teacherBytes,
          Double.isNaN(l.exactMatch()) ? "-" : String.format(Locale.ROOT, "%.4f", l.exactMatch()),
          l.note());
    }
    out.printf(Locale.ROOT, "wall %.0f s%n", (System.nanoTime() - began) / 1e9);
    return new Result(
        teacherParams,
        teacherBytes,
        byName.get("quant").get("weightBytes").asLong(),
        teacherEm,
        byName.get("quant").get("exactMatch").asDouble(),
        quantized,
        List.copyOf(lines));
  }

  private static String cacheNote(Map<String, Double> m) {
    Double hit = m.get("teacherCacheHit");
    if (hit == null) {
      return "none";
    }
    return String.format(
        Locale.ROOT,
        "%s(%.0fs)",
        hit > 0 ? "hit" : "written",
        m.getOrDefault("teacherCacheSeconds", Double.NaN));
  }

  /** The dtypes the checkpoint's tensors are stored in, with their tensor counts. */
  static String dtypes(Path checkpoint) throws IOException {
    Map<String, Integer> counts = new TreeMap<>();
    try (Checkpoint c = Checkpoint.open(checkpoint)) {
      for (String name : c.tensorNames()) {
        counts.merge(c.info(name).dtype().toString(), 1, Integer::sum);
      }
    }
    return counts.toString().replace(" ", "");
  }

  /**
   * Bytes of a checkpoint's weight files by kind of tensor: INT4 codes, scales, zero points,
   * shapes, embeddings, lm_head, norms, other dense tensors, and what the files hold besides the
   * tensors (safetensors headers).
   */
  static String breakdown(Path checkpoint) throws IOException {
    Map<String, Long> bytes = new LinkedHashMap<>();
    for (String k :
        List.of(
            "codes",
            "scales",
            "zero_points",
            "shapes",
            "embed",
            "lm_head",
            "norms",
            "dense",
            "headers")) {
      bytes.put(k, 0L);
    }
    long tensors = 0;
    long files = 0;
    try (Checkpoint c = Checkpoint.open(checkpoint)) {
      for (String name : c.tensorNames()) {
        TensorInfo info = c.info(name);
        String kind;
        if (name.endsWith(".weight_packed")
            || (name.endsWith(".weight") && info.dtype().toString().startsWith("I"))) {
          kind = "codes";
        } else if (name.endsWith(".weight_scale") || name.endsWith(".input_scale")) {
          kind = "scales";
        } else if (name.endsWith(".weight_zero_point")) {
          kind = "zero_points";
        } else if (name.endsWith(".weight_shape")) {
          kind = "shapes";
        } else if (name.contains("embed_tokens")) {
          kind = "embed";
        } else if (name.startsWith("lm_head")) {
          kind = "lm_head";
        } else if (name.contains("norm")) {
          kind = "norms";
        } else {
          kind = "dense";
        }
        bytes.merge(kind, info.byteSize(), Long::sum);
        tensors += info.byteSize();
      }
      for (Path f : c.files()) {
        files += Files.size(f);
      }
    }
    bytes.put("headers", files - tensors);
    StringBuilder s = new StringBuilder("bytes:");
    bytes.forEach((k, v) -> s.append(' ').append(k).append('=').append(v));
    s.append(" dtype=").append(dtypes(checkpoint));
    return s.toString();
  }

  /** Fraction of exact zeros among the linear weights the pruner prunes (all but lm_head). */
  static double zeroFraction(Path checkpoint) throws IOException {
    long zeros = 0;
    long total = 0;
    try (LlamaModel model = CompressedTensors.loadAny(checkpoint)) {
      for (String module : LlamaTensorNames.linearModules(model.config())) {
        if (module.equals(LlamaTensorNames.LM_HEAD_MODULE)) {
          continue;
        }
        float[] weights = model.linearWeight(module);
        for (float w : weights) {
          zeros += w == 0f ? 1 : 0;
        }
        total += weights.length;
      }
    }
    return total == 0 ? 0 : (double) zeros / total;
  }

  record Timed<T>(T value, double seconds) {}

  interface StageCall<T> {
    T call() throws Exception;
  }

  private static <T> Timed<T> timed(StageCall<T> call) throws Exception {
    long t0 = System.nanoTime();
    T value = call.call();
    return new Timed<>(value, (System.nanoTime() - t0) / 1e9);
  }

  private static <P extends Record> StageContext<P> context(
      Path work,
      String node,
      Path model,
      P params,
      List<StageContext.Input> inputs,
      PrintStream out)
      throws IOException {
    StageJob job =
        StageJob.newBuilder()
            .setRunId("pipeline")
            .setJobId("pipeline/" + node)
            .setAttempt(1)
            .setStage(node)
            .setNode(node)
            .setParams("{}")
            .setModel(ref(model, ArtefactFormats.HF_LLAMA))
            .setTimeoutMs(0L)
            .setDispatchedAt(Instant.now())
            .build();
    // each run is a new job: no outputs and no resumable state of a previous run (the distiller
    // would resume its training checkpoint and student init from workDir), only work/shared, the
    // content-keyed caches (the teacher's top-k logits), is kept
    Path scratch = work.resolve("scratch").resolve(node);
    Path workDir = work.resolve("work").resolve(node);
    for (Path stale : List.of(scratch, workDir)) {
      if (Files.exists(stale)) {
        FileTrees.delete(stale);
      }
    }
    long[] lastPrint = {0};
    String[] lastMessage = {""};
    return new StageContext<>(
        job,
        params,
        model,
        inputs,
        Files.createDirectories(scratch),
        Files.createDirectories(workDir),
        (percent, message, metrics) -> {
          // at most one line every 10 s, plus every change of phase
          String head = message.split("[ (]", 2)[0];
          long now = System.nanoTime();
          if (now - lastPrint[0] > 10_000_000_000L || !head.equals(lastMessage[0])) {
            lastPrint[0] = now;
            lastMessage[0] = head;
            out.printf(Locale.ROOT, "  [%s] %5.1f%% %s%n", node, percent, message);
          }
        });
  }
}
