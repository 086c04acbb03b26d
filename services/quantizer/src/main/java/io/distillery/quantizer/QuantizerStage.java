package io.distillery.quantizer;

import io.distillery.model.CheckpointException;
import io.distillery.model.MemoryBudget;
import io.distillery.model.calib.CalibrationInput;
import io.distillery.model.calib.CalibrationStats;
import io.distillery.model.config.LlamaConfig;
import io.distillery.model.config.LlamaTensorNames;
import io.distillery.model.config.ModelConfigException;
import io.distillery.model.config.Projection;
import io.distillery.model.quant.CompressedTensors;
import io.distillery.model.quant.QuantizationScheme;
import io.distillery.model.quant.QuantizedWeight;
import io.distillery.model.safetensors.Checkpoint;
import io.distillery.model.safetensors.SafetensorsFile;
import io.distillery.model.stream.CalibrationTokens;
import io.distillery.model.stream.LayerStreamer;
import io.distillery.model.stream.MemoryPlan;
import io.distillery.model.stream.StreamedJobs;
import io.distillery.quantizer.awq.AwqModel;
import io.distillery.quantizer.gptq.Gptq;
import io.distillery.quantizer.rtn.RoundToNearest;
import io.distillery.quantizer.smoothquant.SmoothQuantModel;
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
import java.util.EnumSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The quantizer worker's stage: reads a Hugging Face Llama checkpoint (and, for AWQ, GPTQ and
 * SmoothQuant, the calibrator's statistics), quantizes every linear layer not excluded, and writes
 * a compressed-tensors checkpoint (see {@link CompressedTensors}) that vLLM loads and the model
 * core runs dequantized. Progress is reported per layer.
 *
 * <p>Every scheme runs on the layer-streaming executor by default ({@link LayerStreamer}: one
 * decoder layer in memory at a time, so a model of any size quantizes within its planned budget,
 * resumable per layer). The calibrated schemes (w4-gptq, w4-awq, w8a8-smoothquant) stream when the
 * calibration artefact carries the samples' token ids ({@link CalibrationTokens}): each layer's
 * statistics (GPTQ's Hessians; AWQ's and SmoothQuant's channel statistics, {@link
 * LayerInputStatistics}) are gathered while the samples pass through it, by default sequentially
 * (layer i+1 sees the outputs of the quantized layer i). Streaming is the default, not a size
 * threshold, so that the tiny models of the tests run the very code that real-size models run; with
 * {@code sequential: false} its output equals the whole-model path's. {@code streaming: false}
 * holds the whole model (refused up front when it cannot fit the worker's budget), and so does a
 * calibrated scheme whose calibration has statistics but no token ids.
 */
@StagePlugin(
    name = "quantizer",
    params = QuantizerParams.class,
    description =
        "post-training weight quantization (RTN, AWQ, GPTQ, SmoothQuant W8A8, FP8) to compressed-tensors")
public final class QuantizerStage implements Stage<QuantizerParams> {

  public static final String OUTPUT_FORMAT = ArtefactFormats.COMPRESSED_TENSORS;

  private static final Logger LOG = LoggerFactory.getLogger(QuantizerStage.class);

  /** Schemes that run on the layer-streaming executor: all six. */
  static final Set<Scheme> STREAMED = EnumSet.allOf(Scheme.class);

  /** The calibrator's batching (equal-length rows, at most this many tokens and rows a batch). */
  static final int MAX_BATCH_TOKENS = 4096;

  static final int MAX_BATCH_ROWS = 16;

  @Override
  public StageResult run(StageContext<QuantizerParams> ctx)
      throws StageException, InterruptedException {
    QuantizerParams params = ctx.params();
    Scheme scheme = params.schemeValue();
    LlamaConfig config = readConfig(ctx.inputModel());
    Map<String, long[]> shapes = LlamaTensorNames.shapes(config);
    List<String> modules = new ArrayList<>();
    for (String module : LlamaTensorNames.linearModules(config)) {
      boolean tiedHead =
          module.equals(LlamaTensorNames.LM_HEAD_MODULE) && config.tieWordEmbeddings();
      if (!params.excludes(module) && !tiedHead) {
        modules.add(module);
      }
    }
    if (scheme.grouped()) {
      for (String module : modules) {
        long cols = shapes.get(LlamaTensorNames.weight(module))[1];
        if (cols % params.groupSize() != 0) {
          throw StageException.fatal(
              "groupSize: "
                  + params.groupSize()
                  + " does not divide in_features "
                  + cols
                  + " of "
                  + module);
        }
      }
    }
    CalibrationTokens tokens = scheme.needsCalibration() ? readTokens(ctx) : null;
    boolean streamable =
        STREAMED.contains(scheme) && !modules.contains(LlamaTensorNames.LM_HEAD_MODULE);
    boolean stream;
    if (params.streaming() == null) {
      stream = streamable && (!scheme.needsCalibration() || tokens != null);
    } else if (params.streaming()) {
      if (!streamable) {
        throw StageException.fatal(
            "streaming: scheme "
                + scheme.id()
                + " streams only with lm_head excluded (or tied); streamed schemes: "
                + STREAMED.stream().map(Scheme::id).toList());
      }
      if (scheme.needsCalibration() && tokens == null) {
        throw StageException.fatal(
            "streaming: streamed "
                + scheme.id()
                + " needs the calibration samples' token ids ("
                + CalibrationTokens.FILE_NAME
                + " in the calibration artefact); re-run the calibrator");
      }
      stream = true;
    } else {
      stream = false;
    }
    if (stream) {
      return streamed(ctx, config, scheme, modules, tokens);
    }
    checkInMemoryPlan(ctx, config, scheme);
    CalibrationStats stats =
        scheme.needsCalibration()
            ? CalibrationInput.read(ctx, "scheme " + ctx.params().scheme())
            : null;
    long[] sourceBytes = new long[1];
    Map<String, float[]> tensors = readTensors(ctx.inputModel(), config, modules, sourceBytes);
    long bytesBefore = sourceBytes[0];
    ctx.progress(2, "loaded " + ctx.inputModel().getFileName() + " scheme=" + scheme.id());

    Map<String, Float> inputScales = new LinkedHashMap<>();
    Map<String, Double> metrics = new LinkedHashMap<>();
    try {
      switch (scheme) {
        case W8A8_SMOOTHQUANT ->
            SmoothQuantModel.smooth(
                config,
                tensors,
                stats,
                params.alpha(),
                params.inputScaleValue(),
                modules,
                inputScales);
        case W4_AWQ -> {
          Map<String, float[]> scales = new LinkedHashMap<>();
          AwqModel.Settings awq =
              new AwqModel.Settings(params.groupSize(), params.awqGrid(), params.bits());
          metrics.put(
              "awq_mean_ratio",
              AwqModel.scale(config, tensors, stats, awq, Set.copyOf(modules), scales));
          metrics.putAll(AwqModel.clip(tensors, stats, awq, modules, scales));
        }
        default -> {}
      }
      Map<String, QuantizedWeight> quantized = new LinkedHashMap<>();
      long bytesAfter = 0;
      for (int i = 0; i < modules.size(); i++) {
        if (Thread.interrupted()) {
          throw new InterruptedException("quantizer interrupted at " + modules.get(i));
        }
        String module = modules.get(i);
        long[] shape = shapes.get(LlamaTensorNames.weight(module));
        int rows = Math.toIntExact(shape[0]);
        int cols = Math.toIntExact(shape[1]);
        float[] w = tensors.get(LlamaTensorNames.weight(module));
        QuantizedWeight q =
            scheme == Scheme.W4_GPTQ
                ? Gptq.quantize(
                    w,
                    rows,
                    cols,
                    stats.layer(module).hessian(),
                    params.groupSize(),
                    params.damp(),
                    params.actOrder(),
                    params.bits(),
                    params.symmetric())
                : RoundToNearest.quantize(
                    scheme.kind(),
                    w,
                    rows,
                    cols,
                    params.groupSize(),
                    params.bits(),
                    params.symmetric());
        quantized.put(module, q);
        bytesAfter += q.storageBytes();
        ctx.progress(
            5 + 90.0 * (i + 1) / modules.size(),
            "quantized " + module,
            Map.of("layers_quantized", (double) (i + 1)));
      }
      Path out = ctx.scratch().resolve("quantized");
      List<String> ignore =
          LlamaTensorNames.linearModules(config).stream()
              .filter(m -> !quantized.containsKey(m))
              .toList();
      CompressedTensors.write(
          out,
          config,
          tensors,
          quantized,
          inputScales,
          new QuantizationScheme(
                  scheme.kind(), params.groupSize(), scheme == Scheme.W8A8_SMOOTHQUANT, ignore)
              .withSymmetric(params.symmetric())
              .withBits(params.bits()));
      metrics.put("weight_bytes_before", (double) bytesBefore);
      metrics.put("weight_bytes_after", (double) bytesAfter);
      metrics.put("compression_ratio", bytesAfter == 0 ? 1.0 : (double) bytesBefore / bytesAfter);
      metrics.put("layers_quantized", (double) quantized.size());
      LOG.info(
          "quantized stage=quantizer scheme={} layers={} bytesBefore={} bytesAfter={}",
          scheme.id(),
          quantized.size(),
          bytesBefore,
          bytesAfter);
      ctx.progress(100, "wrote compressed-tensors checkpoint");
      return StageResult.of(List.of(new StageResult.Output(out, OUTPUT_FORMAT)), metrics);
    } catch (IllegalArgumentException | IllegalStateException e) {
      // missing calibration statistics for a layer, a Hessian that was not collected, inconsistent
      // shapes
      throw StageException.fatal("quantizer " + scheme.id() + ": " + e.getMessage(), e);
    } catch (IOException e) {
      throw StageException.retryable("cannot write the quantized checkpoint: " + e.getMessage(), e);
    }
  }

  /**
   * The streamed path (see {@link LayerStreamer}): one decoder layer at a time, planned against the
   * worker's memory budget before any work, resumable per layer from the job's work directory,
   * dense tensors kept in the input's dtype.
   */
  private static StageResult streamed(
      StageContext<QuantizerParams> ctx,
      LlamaConfig config,
      Scheme scheme,
      List<String> modules,
      CalibrationTokens tokens)
      throws StageException, InterruptedException {
    QuantizerParams params = ctx.params();
    boolean gptq = scheme == Scheme.W4_GPTQ;
    boolean awq = scheme == Scheme.W4_AWQ;
    boolean activationStats = awq || scheme == Scheme.W8A8_SMOOTHQUANT;
    int bins = activationStats ? histogramBins(ctx) : LayerInputStatistics.DEFAULT_BINS;
    List<int[][]> batches =
        tokens == null ? List.of() : tokens.batches(MAX_BATCH_TOKENS, MAX_BATCH_ROWS);
    long batchTokens = 0;
    int batchRows = 0;
    for (int[][] b : batches) {
      batchTokens = Math.max(batchTokens, (long) b.length * b[0].length);
      batchRows = Math.max(batchRows, b.length);
    }
    MemoryPlan plan =
        plan(
            config,
            scheme,
            tokens == null ? 0 : tokens.tokenCount(),
            batchTokens,
            batchRows,
            tokens == null ? 0 : tokens.longest(),
            bins);
    String refusal = plan.refusal(ctx.memoryBudgetBytes());
    if (refusal != null) {
      throw StageException.fatal("quantizer " + scheme.id() + " " + refusal);
    }
    List<String> ignore =
        LlamaTensorNames.linearModules(config).stream().filter(m -> !modules.contains(m)).toList();
    QuantizationScheme format =
        new QuantizationScheme(
                scheme.kind(), params.groupSize(), scheme == Scheme.W8A8_SMOOTHQUANT, ignore)
            .withSymmetric(params.symmetric())
            .withBits(params.bits())
            .withModelDtype(config);
    LayerQuantizer visitor = new LayerQuantizer(config, scheme, params, format, modules, bins);
    Path out = ctx.scratch().resolve("quantized");
    Path work = ctx.workDir().resolve("quantizer-stream");
    boolean sequential = scheme.needsCalibration() && params.sequential();
    long started = System.nanoTime();
    LayerStreamer.Progress progress = StreamedJobs.layerProgress(ctx.progressSink(), started);
    ctx.progress(
        1,
        "streaming "
            + ctx.inputModel().getFileName()
            + " scheme="
            + scheme.id()
            + " sequential="
            + sequential
            + " plan "
            + MemoryPlan.gigabytes(plan.peakBytes())
            + " of "
            + MemoryPlan.gigabytes(ctx.memoryBudgetBytes()));
    try {
      LayerStreamer.Result result =
          new LayerStreamer(
                  ctx.inputModel(),
                  config,
                  LayerStreamer.Options.defaults().withSequential(sequential))
              .run(
                  batches,
                  visitor,
                  out,
                  work,
                  StreamedJobs.fingerprint(
                      ctx.params().toString(), "bins=" + bins, ctx.inputModel(), config, tokens),
                  progress);
      CompressedTensors.writeConfig(
          out, config.withTorchDtype(result.denseDtype().torchName()), format);
      Map<String, Double> metrics = new LinkedHashMap<>();
      long before = 0;
      long after = 0;
      try (Checkpoint written = Checkpoint.open(out)) {
        for (String module : modules) {
          long[] shape = LlamaTensorNames.shapes(config).get(LlamaTensorNames.weight(module));
          before += shape[0] * shape[1] * result.denseDtype().byteSize();
          for (String name :
              written.tensorNames().subSet(module + ".weight", module + ".weight\uffff")) {
            after += written.info(name).byteSize();
          }
        }
      }
      metrics.put("weight_bytes_before", (double) before);
      metrics.put("weight_bytes_after", (double) after);
      metrics.put("compression_ratio", after == 0 ? 1.0 : (double) before / after);
      metrics.put("layers_quantized", (double) modules.size());
      metrics.put("streamed", 1.0);
      metrics.put("sequential", sequential ? 1.0 : 0.0);
      metrics.put("resumed_from_layer", (double) result.resumedFrom());
      metrics.put("planned_peak_bytes", (double) plan.peakBytes());
      metrics.put("forward_gflop", result.forwardFlops() / 1e9);
      metrics.put(
          "forward_seconds",
          result.forwardSeconds() - visitor.hessianSeconds() - visitor.statisticsSeconds());
      if (activationStats) {
        metrics.put("statistics_seconds", visitor.statisticsSeconds());
        metrics.put("statistics_gram_gflop", visitor.statisticsGramFlops() / 1e9);
        metrics.put(awq ? "awq_search_seconds" : "smoothing_seconds", visitor.searchSeconds());
        metrics.putAll(visitor.awqMetrics());
      }
      if (gptq) {
        metrics.put("hessian_gflop", visitor.hessianFlops() / 1e9);
        metrics.put("hessian_seconds", visitor.hessianSeconds());
        metrics.put("gptq_gflop", visitor.gptqFlops() / 1e9);
        metrics.put("gptq_seconds", visitor.gptqSeconds());
      }
      metrics.put("seconds", (System.nanoTime() - started) / 1e9);
      LOG.info(
          "quantized stage=quantizer scheme={} streamed=true sequential={} layers={} bytesBefore={} bytesAfter={}",
          scheme.id(),
          sequential,
          modules.size(),
          before,
          after);
      ctx.progress(100, "wrote compressed-tensors checkpoint");
      return StageResult.of(List.of(new StageResult.Output(out, OUTPUT_FORMAT)), metrics);
    } catch (CheckpointException e) {
      throw StageException.fatal("cannot use the input checkpoint: " + e.getMessage(), e);
    } catch (IllegalArgumentException | IllegalStateException e) {
      throw StageException.fatal("quantizer " + scheme.id() + ": " + e.getMessage(), e);
    } catch (IOException e) {
      throw StageException.retryable(
          "quantizer " + scheme.id() + " I/O failure: " + e.getMessage(), e);
    }
  }

  /**
   * The whole-model path holds every tensor in F32 (and its quantized and dequantized copies) and,
   * for calibrated schemes, every module's X^T X from the calibration artefact: refused up front
   * when that exceeds the budget.
   */
  private static void checkInMemoryPlan(
      StageContext<QuantizerParams> ctx, LlamaConfig config, Scheme scheme) throws StageException {
    long grams = 0;
    if (scheme.needsCalibration()) {
      for (int layer = 0; layer < config.numHiddenLayers(); layer++) {
        for (Projection p : Projection.values()) {
          grams += (long) p.inFeatures(config) * p.inFeatures(config) * 8;
        }
      }
      grams += (long) config.hiddenSize() * config.hiddenSize() * 8;
    }
    long need = MemoryPlan.RUNTIME_BYTES + 3 * MemoryBudget.denseF32Bytes(config) + grams * 2;
    String refusal = MemoryBudget.refusal(need, ctx.memoryBudgetBytes());
    if (refusal != null) {
      throw StageException.fatal(
          "quantizer "
              + scheme.id()
              + " "
              + refusal
              + " (streaming: false holds the whole model in memory; every scheme of "
              + STREAMED.stream().map(Scheme::id).toList()
              + " streams one decoder layer at a time"
              + (scheme.needsCalibration()
                  ? " when the calibration artefact carries the samples' token ids ("
                      + CalibrationTokens.FILE_NAME
                      + ")"
                  : "")
              + ")");
    }
  }

  /**
   * The |x| histogram bins of the calibrator's statistics beside the token ids (its {@code bins}
   * metadata), so that streamed SmoothQuant's entropy input scales see the histogram the
   * whole-model path would read; the calibrator's default when the artefact names none.
   */
  private static int histogramBins(StageContext<QuantizerParams> ctx) throws StageException {
    List<StageContext.Artefact> artefacts = ctx.artefacts(CalibrationStats.FORMAT);
    if (artefacts.isEmpty()) {
      return LayerInputStatistics.DEFAULT_BINS;
    }
    Path artefact = artefacts.getFirst().path();
    Path file =
        Files.isDirectory(artefact) ? artefact.resolve(CalibrationStats.FILE_NAME) : artefact;
    if (!Files.isRegularFile(file)
        || !file.getFileName().toString().equals(CalibrationStats.FILE_NAME)) {
      return LayerInputStatistics.DEFAULT_BINS;
    }
    String bins;
    try (SafetensorsFile f = SafetensorsFile.open(file)) {
      bins = f.metadata().get("bins");
    } catch (CheckpointException e) {
      throw StageException.fatal("corrupt calibration artefact: " + e.getMessage(), e);
    } catch (IOException e) {
      throw StageException.retryable("cannot read the calibration artefact: " + e.getMessage(), e);
    }
    if (bins == null) {
      return LayerInputStatistics.DEFAULT_BINS;
    }
    try {
      int value = Integer.parseInt(bins);
      if (value < 1) {
        throw new NumberFormatException("not positive");
      }
      return value;
    } catch (NumberFormatException e) {
      throw StageException.fatal(
          "corrupt calibration artefact: metadata bins=" + bins + " is not a positive count", e);
    }
  }

  /**
   * The streamed run's peak memory: the executor's pieces ({@link MemoryPlan#estimate}, with GPTQ's
   * Hessians and solve for w4-gptq), and AWQ's and SmoothQuant's per-layer statistics and AWQ's
   * searches ({@link #statisticsBytes}, {@link #awqSearchBytes}).
   */
  static MemoryPlan plan(
      LlamaConfig config,
      Scheme scheme,
      long tokens,
      long batchTokens,
      int batchRows,
      int seqLen,
      int bins) {
    MemoryPlan plan =
        MemoryPlan.estimate(
            config, tokens, batchTokens, batchRows, seqLen, scheme == Scheme.W4_GPTQ);
    if (scheme == Scheme.W4_AWQ || scheme == Scheme.W8A8_SMOOTHQUANT) {
      plan = plan.with("statistics", statisticsBytes(config, scheme, batchTokens, bins));
    }
    if (scheme == Scheme.W4_AWQ) {
      plan = plan.with("search", awqSearchBytes(config));
    }
    return plan;
  }

  /**
   * AWQ's and SmoothQuant's per-layer statistics while the batch passes ({@link
   * LayerInputStatistics#observeBytes}, X^T X for AWQ only); for SmoothQuant also the sequential
   * re-run's simulated INT8 inputs (input, quotient, rounded, clipped, product of the widest batch
   * input).
   */
  static long statisticsBytes(LlamaConfig config, Scheme scheme, long batchTokens, int bins) {
    boolean awq = scheme == Scheme.W4_AWQ;
    long bytes = LayerInputStatistics.observeBytes(config, batchTokens, bins, awq);
    if (!awq) {
      long widest = 0;
      for (long n : LayerInputStatistics.distinctWidths(config)) {
        widest = Math.max(widest, n);
      }
      bytes += 4 * batchTokens * widest * 4;
    }
    return bytes;
  }

  /**
   * AWQ's searches on one layer: its X^T X handed over as statistics (briefly twice, while the
   * accumulator's copy is being read out), and then beside them the scale search's working set on
   * the widest input: its X^T X on the engine and, per weight, the scaled, fake-quantized and error
   * copies (4 + 4 + 8 bytes an element) plus the engine's error, E G and E G .* E (3 x 8).
   */
  static long awqSearchBytes(LlamaConfig config) {
    long grams = LayerInputStatistics.gramBytes(config);
    long widest = 0;
    for (long n : LayerInputStatistics.distinctWidths(config)) {
      widest = Math.max(widest, n);
    }
    long largestWeight = 0;
    for (Projection p : Projection.values()) {
      largestWeight = Math.max(largestWeight, (long) p.inFeatures(config) * p.outFeatures(config));
    }
    return grams + Math.max(grams, widest * widest * 8 + 40 * largestWeight);
  }

  /**
   * The calibration samples' token ids, or null when the calibration artefact carries none (or
   * there is none).
   */
  private static CalibrationTokens readTokens(StageContext<QuantizerParams> ctx)
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

  private static LlamaConfig readConfig(Path model) throws StageException {
    try {
      return LlamaConfig.read(model.resolve(LlamaConfig.FILE_NAME));
    } catch (ModelConfigException e) {
      throw StageException.fatal("unsupported or invalid model config: " + e.getMessage(), e);
    } catch (IOException e) {
      throw StageException.retryable("cannot read config.json: " + e.getMessage(), e);
    }
  }

  /**
   * Every tensor as floats; adds the stored bytes of the weights of {@code modules} to {@code
   * weightBytes[0]}.
   */
  private static Map<String, float[]> readTensors(
      Path model, LlamaConfig config, List<String> modules, long[] weightBytes)
      throws StageException {
    Map<String, float[]> tensors = new LinkedHashMap<>();
    try (Checkpoint checkpoint = Checkpoint.open(model)) {
      for (String name : LlamaTensorNames.shapes(config).keySet()) {
        tensors.put(name, checkpoint.floats(name));
      }
      for (String module : modules) {
        String name = LlamaTensorNames.weight(module);
        weightBytes[0] +=
            (long) tensors.get(name).length * checkpoint.info(name).dtype().byteSize();
      }
      return tensors;
    } catch (CheckpointException e) {
      throw StageException.fatal("cannot use the input checkpoint: " + e.getMessage(), e);
    } catch (IOException e) {
      throw StageException.retryable("cannot read the input checkpoint: " + e.getMessage(), e);
    }
  }
}
