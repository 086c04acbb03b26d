package io.distillery.pruner;

import io.distillery.model.CheckpointException;
import io.distillery.model.MemoryBudget;
import io.distillery.model.calib.CalibrationInput;
import io.distillery.model.calib.CalibrationStats;
import io.distillery.model.config.LlamaConfig;
import io.distillery.model.config.LlamaTensorNames;
import io.distillery.model.config.ModelConfigException;
import io.distillery.model.config.Projection;
import io.distillery.model.llama.LlamaModel;
import io.distillery.model.quant.CompressedTensors;
import io.distillery.model.quant.QuantizationScheme;
import io.distillery.model.safetensors.Checkpoint;
import io.distillery.model.safetensors.DType;
import io.distillery.model.safetensors.SafetensorsFile;
import io.distillery.model.safetensors.TensorInfo;
import io.distillery.model.stream.CalibrationTokens;
import io.distillery.model.stream.LayerStreamer;
import io.distillery.model.stream.MemoryPlan;
import io.distillery.model.stream.StreamedJobs;
import io.distillery.pruner.magnitude.MagnitudePruner;
import io.distillery.pruner.sparsegpt.SparseGptPruner;
import io.distillery.pruner.structured.StructuredPruner;
import io.distillery.pruner.wanda.WandaPruner;
import io.distillery.stage.ArtefactFormats;
import io.distillery.stage.Stage;
import io.distillery.stage.StageContext;
import io.distillery.stage.StageException;
import io.distillery.stage.StagePlugin;
import io.distillery.stage.StageResult;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The pruner worker's stage: magnitude, Wanda or SparseGPT masks (unstructured or N:M, e.g. 2:4) on
 * every linear layer the user does not exclude, or structured removal of heads, MLP channels and
 * layers. Writes a Hugging Face checkpoint ({@code hf-llama}); the worker host adds its lineage
 * manifest.
 *
 * <p>Magnitude, Wanda and SparseGPT run on the layer-streaming executor by default ({@link
 * LayerStreamer}: one decoder layer in memory at a time, planned against the worker's budget before
 * any work, resumable per layer, outputs in the input's dtype, sharded with an index). Streamed
 * Wanda and SparseGPT need the calibration samples' token ids ({@link CalibrationTokens}) and by
 * default calibrate sequentially (layer i+1 on the outputs of the already pruned layer i); with
 * {@code sequential: false} the output equals the whole-model path's. Structured pruning streams
 * too: importance from the calibrator's per-channel statistics, then the sliced layers written one
 * at a time. {@code streaming: false} holds the whole model in F32 (and writes F32), refused up
 * front when it cannot fit.
 *
 * <p>The model pruned is the last upstream {@code hf-llama} artefact when there is one (e.g. after
 * a distillation node), else the run's registered model.
 */
@StagePlugin(
    name = "pruner",
    params = PrunerParams.class,
    description =
        "magnitude / Wanda / SparseGPT (unstructured, 2:4) and structured pruning of Llama checkpoints")
public final class PrunerStage implements Stage<PrunerParams> {

  public static final String FORMAT = ArtefactFormats.HF_LLAMA;

  /** The calibrator's batching (equal-length rows, at most this many tokens and rows a batch). */
  static final int MAX_BATCH_TOKENS = 4096;

  static final int MAX_BATCH_ROWS = 16;

  private static final Logger LOG = LoggerFactory.getLogger(PrunerStage.class);

  @Override
  public StageResult run(StageContext<PrunerParams> ctx)
      throws StageException, InterruptedException {
    PrunerParams p = ctx.params();
    Path parent = parent(ctx);
    String jobId = ctx.job() == null ? "-" : ctx.job().getJobId();
    LOG.info(
        "pruning jobId={} stage=pruner method={} pattern={} model={}",
        jobId,
        p.method(),
        p.pattern(),
        parent);
    LlamaConfig config = readConfig(parent);
    StageResult result;
    if (p.method().equals("structured")) {
      boolean stream = p.streaming() == null || p.streaming();
      result =
          stream ? structuredStreamed(ctx, parent, config) : structuredWhole(ctx, parent, config);
    } else {
      List<String> modules = prunedModules(p, config);
      if (modules.isEmpty()) {
        throw StageException.fatal("exclude " + p.exclude() + " leaves no linear layer to prune");
      }
      if (p.method().equals("sparsegpt")
          && p.sparsityPattern() instanceof SparsityPattern.NOfM nm
          && p.blockSize() % nm.m() != 0) {
        throw StageException.fatal(
            "blockSize "
                + p.blockSize()
                + " is not a multiple of "
                + nm.m()
                + " (pattern "
                + p.pattern()
                + ")");
      }
      boolean calibrated = !p.method().equals("magnitude");
      CalibrationTokens tokens = calibrated ? readTokens(ctx) : null;
      boolean streamable = !modules.contains(LlamaTensorNames.LM_HEAD_MODULE);
      boolean stream;
      if (p.streaming() == null) {
        stream = streamable && (!calibrated || tokens != null);
      } else if (p.streaming()) {
        if (!streamable) {
          throw StageException.fatal(
              "streaming: the layer-streaming executor copies lm_head as stored; exclude lm_head"
                  + " (the default) or set streaming: false");
        }
        if (calibrated && tokens == null) {
          throw StageException.fatal(
              "streaming: streamed "
                  + p.method()
                  + " needs the calibration samples' token ids ("
                  + CalibrationTokens.FILE_NAME
                  + " in the calibration artefact); add a calibrator node to this node's 'after'"
                  + " list or re-run it");
        }
        stream = true;
      } else {
        stream = false;
      }
      result =
          stream
              ? streamed(ctx, parent, config, modules, tokens)
              : whole(ctx, parent, config, modules);
    }
    ctx.progress(100, "pruned", result.metrics());
    LOG.info("pruned jobId={} stage=pruner metrics={}", jobId, result.metrics());
    return result;
  }

  /** The linear modules pruned: every one not excluded, the LM head only when untied. */
  static List<String> prunedModules(PrunerParams p, LlamaConfig config) {
    List<String> modules = new ArrayList<>();
    for (String module : LlamaTensorNames.linearModules(config)) {
      boolean tiedHead =
          module.equals(LlamaTensorNames.LM_HEAD_MODULE) && config.tieWordEmbeddings();
      if (!p.excludes(module) && !tiedHead) {
        modules.add(module);
      }
    }
    return modules;
  }

  /**
   * The streamed path (see {@link LayerStreamer}): one decoder layer at a time, planned against the
   * worker's memory budget before any work, resumable per layer from the job's work directory,
   * dense tensors kept in the input's dtype.
   */
  private static StageResult streamed(
      StageContext<PrunerParams> ctx,
      Path parent,
      LlamaConfig config,
      List<String> modules,
      CalibrationTokens tokens)
      throws StageException, InterruptedException {
    PrunerParams p = ctx.params();
    boolean sparseGpt = p.method().equals("sparsegpt");
    List<int[][]> batches =
        tokens == null ? List.of() : tokens.batches(MAX_BATCH_TOKENS, MAX_BATCH_ROWS);
    long batchTokens = 0;
    int batchRows = 0;
    for (int[][] b : batches) {
      batchTokens = Math.max(batchTokens, (long) b.length * b[0].length);
      batchRows = Math.max(batchRows, b.length);
    }
    MemoryPlan plan =
        MemoryPlan.estimate(
            config,
            tokens == null ? 0 : tokens.tokenCount(),
            batchTokens,
            batchRows,
            tokens == null ? 0 : tokens.longest(),
            sparseGpt);
    String refusal = plan.refusal(ctx.memoryBudgetBytes());
    if (refusal != null) {
      throw StageException.fatal("pruner " + p.method() + " " + refusal);
    }
    boolean sequential = tokens != null && p.sequential();
    LayerPruner visitor = new LayerPruner(p, modules);
    Path out = ctx.scratch().resolve("model");
    Path work = ctx.workDir().resolve("pruner-stream");
    long started = System.nanoTime();
    ctx.progress(
        1,
        "streaming "
            + parent.getFileName()
            + " method="
            + p.method()
            + " pattern="
            + p.pattern()
            + " sequential="
            + sequential
            + " plan "
            + MemoryPlan.gigabytes(plan.peakBytes())
            + " of "
            + MemoryPlan.gigabytes(ctx.memoryBudgetBytes()));
    try {
      LayerStreamer.Result result =
          new LayerStreamer(
                  parent, config, LayerStreamer.Options.defaults().withSequential(sequential))
              .run(
                  batches,
                  visitor,
                  out,
                  work,
                  StreamedJobs.fingerprint(ctx.params().toString(), "", parent, config, tokens),
                  StreamedJobs.layerProgress(ctx.progressSink(), started));
      Map<String, Double> metrics = new LinkedHashMap<>();
      long before = LlamaTensorNames.parameterCount(config);
      long total = 0;
      long zeros = 0;
      try (Checkpoint written = Checkpoint.open(out)) {
        for (String module : modules) {
          float[] w = written.floats(LlamaTensorNames.weight(module));
          total += w.length;
          zeros += zeros(w);
        }
      }
      double sparsity = (double) zeros / total;
      writeConfig(
          out, config.withTorchDtype(result.denseDtype().torchName()), p, modules, sparsity);
      metrics.put("params_before", (double) before);
      metrics.put("sparsity", sparsity);
      metrics.put("layers_pruned", (double) modules.size());
      metrics.put("params_after", (double) before);
      metrics.put("nonzero_params_after", (double) (before - zeros));
      metrics.put("streamed", 1.0);
      metrics.put("sequential", sequential ? 1.0 : 0.0);
      metrics.put("resumed_from_layer", (double) result.resumedFrom());
      metrics.put("planned_peak_bytes", (double) plan.peakBytes());
      metrics.put("forward_gflop", result.forwardFlops() / 1e9);
      metrics.put("forward_seconds", result.forwardSeconds() - visitor.statisticsSeconds());
      if (tokens != null) {
        metrics.put("statistics_seconds", visitor.statisticsSeconds());
      }
      if (sparseGpt) {
        metrics.put("hessian_gflop", visitor.hessianFlops() / 1e9);
      }
      metrics.put("prune_seconds", visitor.pruneSeconds());
      metrics.put("seconds", (System.nanoTime() - started) / 1e9);
      return StageResult.of(List.of(new StageResult.Output(out, FORMAT)), metrics);
    } catch (CheckpointException e) {
      throw StageException.fatal("cannot prune " + parent + ": " + e.getMessage(), e);
    } catch (IllegalArgumentException | IllegalStateException e) {
      throw StageException.fatal("pruner " + p.method() + " failed: " + e.getMessage(), e);
    } catch (IOException e) {
      throw StageException.retryable("pruner " + p.method() + " I/O failure: " + e.getMessage(), e);
    }
  }

  /**
   * config.json of the pruned model; for 2:4, compressed-tensors' dense {@code sparsity_config} so
   * that engines see the structure (issue 17).
   */
  private static void writeConfig(
      Path out, LlamaConfig config, PrunerParams p, List<String> modules, double sparsity)
      throws IOException {
    if (p.sparsityPattern() instanceof SparsityPattern.NOfM nm && nm.n() == 2 && nm.m() == 4) {
      CompressedTensors.writeSparseConfig(
          out, config, new QuantizationScheme.Sparsity("2:4", modules, sparsity));
    } else {
      config.write(out);
    }
  }

  /**
   * The whole-model path: the model in F32 (DJL arrays and the Java copies pruned from them) and
   * the calibration artefact's statistics (for SparseGPT every module's X^T X, for Wanda the
   * per-channel vectors only). Refused before loading when that exceeds the worker's budget.
   */
  private static StageResult whole(
      StageContext<PrunerParams> ctx, Path parent, LlamaConfig config, List<String> modules)
      throws StageException, InterruptedException {
    PrunerParams p = ctx.params();
    boolean calibrated = !p.method().equals("magnitude");
    boolean sparseGpt = p.method().equals("sparsegpt");
    long solve = 0;
    if (sparseGpt) {
      long widest = 0;
      for (Projection projection : Projection.values()) {
        widest = Math.max(widest, projection.inFeatures(config));
      }
      solve = MemoryPlan.GPTQ_WORKING_COPIES * widest * widest * Float.BYTES;
    }
    // Wanda reads the per-channel norms only; SparseGPT every module's X^T X
    checkWholeModelPlan(
        ctx,
        config,
        sparseGpt ? calibrationBytes(ctx) : calibrated ? calibrationVectorBytes(ctx) : 0,
        solve);
    CalibrationStats stats =
        sparseGpt
            ? CalibrationInput.read(ctx, "method " + p.method())
            : calibrated ? readStatsWithoutGrams(ctx) : null;
    Path out = ctx.scratch().resolve("model");
    Map<String, Double> metrics = new LinkedHashMap<>();
    ctx.progress(0, "loading " + parent.getFileName());
    try (LlamaModel model = LlamaModel.load(parent)) {
      long before = LlamaTensorNames.parameterCount(config);
      metrics.put("params_before", (double) before);
      LinearPruner pruner =
          switch (p.method()) {
            case "magnitude" -> new MagnitudePruner(p.sparsityPattern());
            case "wanda" -> WandaPruner.of(p.sparsityPattern(), stats);
            case "sparsegpt" ->
                SparseGptPruner.of(p.sparsityPattern(), stats, p.damp(), p.blockSize());
            default -> throw new IllegalStateException("unhandled method " + p.method());
          };
      long zeros = 0;
      long total = 0;
      for (int i = 0; i < modules.size(); i++) {
        String module = modules.get(i);
        if (Thread.interrupted()) {
          throw new InterruptedException("pruning interrupted at " + module);
        }
        long[] shape =
            model.parameters().get(LlamaTensorNames.weight(module)).getShape().getShape();
        float[] pruned =
            pruner.prune(
                module,
                model.linearWeight(module),
                Math.toIntExact(shape[0]),
                Math.toIntExact(shape[1]));
        zeros += zeros(pruned);
        total += pruned.length;
        model.replaceLinearWeight(module, pruned);
        if (module.endsWith("down_proj") || i == modules.size() - 1) {
          ctx.progress(
              99.0 * (i + 1) / modules.size(),
              "pruned " + module,
              Map.of("sparsity", (double) zeros / total));
        }
      }
      ctx.progress(99, "saving");
      model.save(out, DType.F32);
      double sparsity = (double) zeros / total;
      writeConfig(out, config.withTorchDtype("float32"), p, modules, sparsity);
      metrics.put("sparsity", sparsity);
      metrics.put("layers_pruned", (double) modules.size());
      metrics.put("params_after", (double) before);
      metrics.put("nonzero_params_after", (double) (before - zeros));
    } catch (CheckpointException e) {
      throw StageException.fatal("cannot prune " + parent + ": " + e.getMessage(), e);
    } catch (IllegalArgumentException | IllegalStateException e) {
      throw StageException.fatal("pruner " + p.method() + " failed: " + e.getMessage(), e);
    } catch (IOException e) {
      throw StageException.retryable("cannot read or write the model: " + e.getMessage(), e);
    }
    return StageResult.of(List.of(new StageResult.Output(out, FORMAT)), metrics);
  }

  /**
   * Structured pruning streamed: the importance of heads, MLP channels and layers from the
   * calibrator's per-channel statistics (X^T X left on disk) and one module's weight at a time,
   * then the kept layers sliced and written one at a time in the input's dtype.
   */
  private static StageResult structuredStreamed(
      StageContext<PrunerParams> ctx, Path parent, LlamaConfig config)
      throws StageException, InterruptedException {
    PrunerParams p = ctx.params();
    MemoryPlan plan = MemoryPlan.estimate(config, 0, 0, 0, 0, false);
    long need = plan.peakBytes() + calibrationVectorBytes(ctx);
    String refusal = MemoryBudget.refusal(need, ctx.memoryBudgetBytes());
    if (refusal != null) {
      throw StageException.fatal(
          "pruner structured " + refusal + " (estimate " + plan + ", calibration statistics)");
    }
    CalibrationStats stats = readStatsWithoutGrams(ctx);
    Path out = ctx.scratch().resolve("model");
    long started = System.nanoTime();
    ctx.progress(
        1,
        "streaming "
            + parent.getFileName()
            + " method=structured plan "
            + MemoryPlan.gigabytes(need)
            + " of "
            + MemoryPlan.gigabytes(ctx.memoryBudgetBytes()));
    try {
      StructuredPruner.Streamed result =
          StructuredPruner.pruneStreamed(
              parent,
              config,
              stats,
              p.headFraction(),
              p.mlpFraction(),
              p.dropLayers(),
              out,
              StreamedJobs.layerProgress(ctx.progressSink(), started));
      Map<String, Double> metrics = structuredMetrics(config, result.config());
      metrics.put("streamed", 1.0);
      metrics.put("planned_peak_bytes", (double) need);
      metrics.put("seconds", (System.nanoTime() - started) / 1e9);
      return StageResult.of(List.of(new StageResult.Output(out, FORMAT)), metrics);
    } catch (CheckpointException e) {
      throw StageException.fatal("cannot prune " + parent + ": " + e.getMessage(), e);
    } catch (IllegalArgumentException | IllegalStateException e) {
      throw StageException.fatal("pruner structured failed: " + e.getMessage(), e);
    } catch (IOException e) {
      throw StageException.retryable("pruner structured I/O failure: " + e.getMessage(), e);
    }
  }

  /** Structured pruning with the whole model in F32 (streaming: false). */
  private static StageResult structuredWhole(
      StageContext<PrunerParams> ctx, Path parent, LlamaConfig config)
      throws StageException, InterruptedException {
    PrunerParams p = ctx.params();
    checkWholeModelPlan(ctx, config, calibrationVectorBytes(ctx), 0);
    CalibrationStats stats = readStatsWithoutGrams(ctx);
    Path out = ctx.scratch().resolve("model");
    ctx.progress(0, "loading " + parent.getFileName());
    try (LlamaModel model = LlamaModel.load(parent)) {
      LlamaConfig pruned =
          StructuredPruner.prune(
              model,
              stats,
              p.headFraction(),
              p.mlpFraction(),
              p.dropLayers(),
              out,
              (done, total) ->
                  ctx.progress(100.0 * done / total, "wrote layer " + done + "/" + total));
      return StageResult.of(
          List.of(new StageResult.Output(out, FORMAT)), structuredMetrics(config, pruned));
    } catch (CheckpointException e) {
      throw StageException.fatal("cannot prune " + parent + ": " + e.getMessage(), e);
    } catch (IllegalArgumentException | IllegalStateException e) {
      throw StageException.fatal("pruner structured failed: " + e.getMessage(), e);
    } catch (IOException e) {
      throw StageException.retryable("cannot read or write the model: " + e.getMessage(), e);
    }
  }

  private static Map<String, Double> structuredMetrics(LlamaConfig config, LlamaConfig pruned) {
    Map<String, Double> metrics = new LinkedHashMap<>();
    long before = LlamaTensorNames.parameterCount(config);
    long after = LlamaTensorNames.parameterCount(pruned);
    metrics.put("params_before", (double) before);
    metrics.put("params_after", (double) after);
    metrics.put("nonzero_params_after", (double) after);
    metrics.put("param_reduction", 1.0 - (double) after / before);
    metrics.put("num_hidden_layers", (double) pruned.numHiddenLayers());
    metrics.put("num_attention_heads", (double) pruned.numAttentionHeads());
    metrics.put("num_key_value_heads", (double) pruned.numKeyValueHeads());
    metrics.put("intermediate_size", (double) pruned.intermediateSize());
    return metrics;
  }

  /**
   * The whole-model paths hold every tensor in F32 three times (DJL arrays, the Java copies pruned
   * from them, the pruned copies and what is written), the calibration artefact as read, and for
   * SparseGPT one module's solve: refused up front when that exceeds the budget.
   */
  private static void checkWholeModelPlan(
      StageContext<PrunerParams> ctx, LlamaConfig config, long calibrationBytes, long solveBytes)
      throws StageException {
    long need =
        MemoryPlan.RUNTIME_BYTES
            + 3 * MemoryBudget.denseF32Bytes(config)
            + calibrationBytes
            + solveBytes;
    String refusal = MemoryBudget.refusal(need, ctx.memoryBudgetBytes());
    if (refusal != null) {
      throw StageException.fatal(
          "pruner "
              + ctx.params().method()
              + " "
              + refusal
              + " (streaming: false holds the whole model in F32; leave streaming unset to run"
              + " one decoder layer at a time)");
    }
  }

  /** The calibration statistics file's size (what reading it holds), 0 when there is none. */
  private static long calibrationBytes(StageContext<PrunerParams> ctx) throws StageException {
    List<StageContext.Artefact> artefacts = ctx.artefacts(CalibrationStats.FORMAT);
    if (artefacts.isEmpty()) {
      return 0;
    }
    Path a = artefacts.getFirst().path();
    Path file = Files.isDirectory(a) ? a.resolve(CalibrationStats.FILE_NAME) : a;
    try {
      return Files.isRegularFile(file) ? Files.size(file) : 0;
    } catch (IOException e) {
      throw StageException.retryable("cannot read the calibration artefact: " + e.getMessage(), e);
    }
  }

  /**
   * Bytes of the calibration artefact's tensors other than X^T X (the per-channel vectors and
   * histograms structured pruning reads), from the file's header; 0 when there is none.
   */
  private static long calibrationVectorBytes(StageContext<PrunerParams> ctx) throws StageException {
    List<StageContext.Artefact> artefacts = ctx.artefacts(CalibrationStats.FORMAT);
    if (artefacts.isEmpty()) {
      return 0;
    }
    Path a = artefacts.getFirst().path();
    Path file = Files.isDirectory(a) ? a.resolve(CalibrationStats.FILE_NAME) : a;
    try (SafetensorsFile f = SafetensorsFile.open(file)) {
      long bytes = 0;
      for (TensorInfo info : f.tensors()) {
        bytes += info.name().endsWith(".gram") ? 0 : info.byteSize();
      }
      return bytes;
    } catch (CheckpointException e) {
      throw StageException.fatal("corrupt calibration artefact: " + e.getMessage(), e);
    } catch (IOException e) {
      throw StageException.retryable("cannot read the calibration artefact: " + e.getMessage(), e);
    }
  }

  private static CalibrationStats readStatsWithoutGrams(StageContext<PrunerParams> ctx)
      throws StageException {
    List<StageContext.Artefact> artefacts = ctx.artefacts(CalibrationStats.FORMAT);
    if (artefacts.isEmpty()) {
      // the one wording of a missing calibration input
      return CalibrationInput.read(ctx, "method " + ctx.params().method());
    }
    try {
      return CalibrationStats.readArtefact(artefacts.getFirst().path(), false);
    } catch (CheckpointException e) {
      throw StageException.fatal("corrupt calibration artefact: " + e.getMessage(), e);
    } catch (IOException e) {
      throw StageException.retryable("cannot read the calibration artefact: " + e.getMessage(), e);
    }
  }

  /**
   * The calibration samples' token ids, or null when the calibration artefact carries none (or
   * there is none).
   */
  private static CalibrationTokens readTokens(StageContext<PrunerParams> ctx)
      throws StageException {
    List<StageContext.Artefact> artefacts = ctx.artefacts(CalibrationStats.FORMAT);
    if (artefacts.isEmpty()) {
      return null;
    }
    try {
      return CalibrationTokens.readArtefact(artefacts.getFirst().path());
    } catch (CheckpointException e) {
      throw StageException.fatal("corrupt calibration tokens: " + e.getMessage(), e);
    } catch (IOException e) {
      throw StageException.retryable("cannot read the calibration tokens: " + e.getMessage(), e);
    }
  }

  private static long zeros(float[] w) {
    long n = 0;
    for (float v : w) {
      n += v == 0f ? 1 : 0;
    }
    return n;
  }

  private static LlamaConfig readConfig(Path model) throws StageException {
    try {
      return LlamaConfig.read(model.resolve(LlamaConfig.FILE_NAME));
    } catch (ModelConfigException e) {
      throw StageException.fatal(
          "cannot prune " + model + ": unsupported or invalid model config: " + e.getMessage(), e);
    } catch (IOException e) {
      throw StageException.retryable("cannot read config.json: " + e.getMessage(), e);
    }
  }

  /** The checkpoint pruned: the last upstream {@value #FORMAT} output, else the run's model. */
  private static Path parent(StageContext<PrunerParams> ctx) throws StageException {
    List<StageContext.Artefact> upstream = ctx.artefacts(FORMAT);
    if (!upstream.isEmpty()) {
      return upstream.getLast().path();
    }
    if (ctx.model() == null) {
      throw StageException.fatal(
          "the pruner needs a model: the run has none and no upstream node produced " + FORMAT);
    }
    return ctx.model();
  }
}
