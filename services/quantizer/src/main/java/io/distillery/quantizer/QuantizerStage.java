package io.distillery.quantizer;

import io.distillery.model.CheckpointException;
import io.distillery.model.calib.CalibrationInput;
import io.distillery.model.calib.CalibrationStats;
import io.distillery.model.calib.LayerStats;
import io.distillery.model.config.LlamaConfig;
import io.distillery.model.config.LlamaTensorNames;
import io.distillery.model.config.ModelConfigException;
import io.distillery.model.config.Projection;
import io.distillery.model.quant.CompressedTensors;
import io.distillery.model.quant.QuantizationScheme;
import io.distillery.model.quant.QuantizedWeight;
import io.distillery.model.safetensors.Checkpoint;
import io.distillery.model.stream.CalibrationTokens;
import io.distillery.model.stream.LayerStreamer;
import io.distillery.model.stream.MemoryPlan;
import io.distillery.stage.ArtefactFormats;
import io.distillery.stage.Stage;
import io.distillery.stage.StageContext;
import io.distillery.stage.StageException;
import io.distillery.stage.StagePlugin;
import io.distillery.stage.StageResult;
import io.distillery.quantizer.awq.AwqClipSearch;
import io.distillery.quantizer.awq.AwqScaleSearch;
import io.distillery.quantizer.gptq.Gptq;
import io.distillery.quantizer.rtn.RoundToNearest;
import io.distillery.quantizer.smoothquant.SmoothQuant;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.EnumSet;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The quantizer worker's stage: reads a Hugging Face Llama checkpoint (and, for AWQ, GPTQ and SmoothQuant, the
 * calibrator's statistics), quantizes every linear layer not excluded, and writes a compressed-tensors checkpoint
 * (see {@link CompressedTensors}) that vLLM loads and the model core runs dequantized. Progress is reported per
 * layer.
 *
 * <p>w8-rtn, w4-rtn, fp8 and w4-gptq run on the layer-streaming executor by default ({@link LayerStreamer}: one
 * decoder layer in memory at a time, so a model of any size quantizes within its planned budget, resumable per layer);
 * streamed w4-gptq needs the calibration samples' token ids ({@link CalibrationTokens}) and by default calibrates
 * sequentially. Streaming is the default, not a size threshold, so that the tiny models of the tests run the very code
 * that real-size models run; with {@code sequential: false} its output equals the whole-model path's. w4-awq and
 * w8a8-smoothquant still hold the whole model (refused up front when it cannot fit the worker's budget).
 */
@StagePlugin(name = "quantizer", params = QuantizerParams.class,
    description = "post-training weight quantization (RTN, AWQ, GPTQ, SmoothQuant W8A8, FP8) to compressed-tensors")
public final class QuantizerStage implements Stage<QuantizerParams> {

  public static final String OUTPUT_FORMAT = ArtefactFormats.COMPRESSED_TENSORS;

  private static final Logger LOG = LoggerFactory.getLogger(QuantizerStage.class);
  /** AWQ clipping grid: ratios 1, 0.95, ... 0.55, as the authors' n_grid 20 with max_shrink 0.5. */
  static final int CLIP_STEPS = 10;
  static final double CLIP_MAX_SHRINK = 0.5;
  /** Schemes that run on the layer-streaming executor; AWQ and SmoothQuant still hold the whole model. */
  static final Set<Scheme> STREAMED = EnumSet.of(Scheme.W8_RTN, Scheme.W4_RTN, Scheme.FP8, Scheme.W4_GPTQ);
  /** The calibrator's batching (equal-length rows, at most this many tokens and rows a batch). */
  static final int MAX_BATCH_TOKENS = 4096;
  static final int MAX_BATCH_ROWS = 16;

  @Override
  public StageResult run(StageContext<QuantizerParams> ctx) throws StageException, InterruptedException {
    QuantizerParams params = ctx.params();
    Scheme scheme = params.schemeValue();
    LlamaConfig config = readConfig(ctx.inputModel());
    Map<String, long[]> shapes = LlamaTensorNames.shapes(config);
    List<String> modules = new ArrayList<>();
    for (String module : LlamaTensorNames.linearModules(config)) {
      boolean tiedHead = module.equals(LlamaTensorNames.LM_HEAD_MODULE) && config.tieWordEmbeddings();
      if (!params.excludes(module) && !tiedHead) {
        modules.add(module);
      }
    }
    if (scheme.grouped()) {
      for (String module : modules) {
        long cols = shapes.get(LlamaTensorNames.weight(module))[1];
        if (cols % params.groupSize() != 0) {
          throw StageException.fatal("groupSize: " + params.groupSize() + " does not divide in_features " + cols
              + " of " + module);
        }
      }
    }
    CalibrationTokens tokens = scheme == Scheme.W4_GPTQ ? readTokens(ctx) : null;
    boolean streamable = STREAMED.contains(scheme) && !modules.contains(LlamaTensorNames.LM_HEAD_MODULE);
    boolean stream;
    if (params.streaming() == null) {
      stream = streamable && (scheme != Scheme.W4_GPTQ || tokens != null);
    } else if (params.streaming()) {
      if (!streamable) {
        throw StageException.fatal("streaming: scheme " + scheme.id() + (STREAMED.contains(scheme)
            ? " streams only with lm_head excluded (or tied)" : " does not run on the layer-streaming executor yet")
            + "; streamed schemes: " + STREAMED.stream().map(Scheme::id).toList());
      }
      if (scheme == Scheme.W4_GPTQ && tokens == null) {
        throw StageException.fatal("streaming: streamed w4-gptq needs the calibration samples' token ids ("
            + CalibrationTokens.FILE_NAME + " in the calibration artefact); re-run the calibrator");
      }
      stream = true;
    } else {
      stream = false;
    }
    if (stream) {
      return streamed(ctx, config, scheme, modules, tokens);
    }
    checkInMemoryPlan(ctx, config, scheme);
    CalibrationStats stats = scheme.needsCalibration() ? CalibrationInput.read(ctx, "scheme " + ctx.params().scheme()) : null;
    long[] sourceBytes = new long[1];
    Map<String, float[]> tensors = readTensors(ctx.inputModel(), config, modules, sourceBytes);
    long bytesBefore = sourceBytes[0];
    ctx.progress(2, "loaded " + ctx.inputModel().getFileName() + " scheme=" + scheme.id());

    Map<String, Float> inputScales = new LinkedHashMap<>();
    Map<String, Double> metrics = new LinkedHashMap<>();
    try {
      switch (scheme) {
        case W8A8_SMOOTHQUANT -> smooth(config, tensors, stats, params, modules, inputScales);
        case W4_AWQ -> {
          Map<String, float[]> scales = new LinkedHashMap<>();
          metrics.put("awq_mean_ratio", awqScale(config, tensors, stats, params, Set.copyOf(modules), scales));
          metrics.putAll(awqClip(tensors, stats, params, modules, scales));
        }
        default -> { }
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
        QuantizedWeight q = scheme == Scheme.W4_GPTQ
            ? Gptq.quantize(w, rows, cols, stats.layer(module).hessian(), params.groupSize(), params.damp(),
                params.actOrder(), params.bits(), params.symmetric())
            : RoundToNearest.quantize(scheme.kind(), w, rows, cols, params.groupSize(), params.bits(),
                params.symmetric());
        quantized.put(module, q);
        bytesAfter += q.storageBytes();
        ctx.progress(5 + 90.0 * (i + 1) / modules.size(), "quantized " + module,
            Map.of("layers_quantized", (double) (i + 1)));
      }
      Path out = ctx.scratch().resolve("quantized");
      List<String> ignore = LlamaTensorNames.linearModules(config).stream().filter(m -> !quantized.containsKey(m))
          .toList();
      CompressedTensors.write(out, config, tensors, quantized, inputScales,
          new QuantizationScheme(scheme.kind(), params.groupSize(), scheme == Scheme.W8A8_SMOOTHQUANT, ignore)
              .withSymmetric(params.symmetric()).withBits(params.bits()));
      metrics.put("weight_bytes_before", (double) bytesBefore);
      metrics.put("weight_bytes_after", (double) bytesAfter);
      metrics.put("compression_ratio", bytesAfter == 0 ? 1.0 : (double) bytesBefore / bytesAfter);
      metrics.put("layers_quantized", (double) quantized.size());
      LOG.info("quantized stage=quantizer scheme={} layers={} bytesBefore={} bytesAfter={}", scheme.id(),
          quantized.size(), bytesBefore, bytesAfter);
      ctx.progress(100, "wrote compressed-tensors checkpoint");
      return StageResult.of(List.of(new StageResult.Output(out, OUTPUT_FORMAT)), metrics);
    } catch (IllegalArgumentException | IllegalStateException e) {
      // missing calibration statistics for a layer, a Hessian that was not collected, inconsistent shapes
      throw StageException.fatal("quantizer " + scheme.id() + ": " + e.getMessage(), e);
    } catch (IOException e) {
      throw StageException.retryable("cannot write the quantized checkpoint: " + e.getMessage(), e);
    }
  }

  /**
   * The streamed path (see {@link LayerStreamer}): one decoder layer at a time, planned against the worker's memory
   * budget before any work, resumable per layer from the job's work directory, dense tensors kept in the input's
   * dtype.
   */
  private static StageResult streamed(StageContext<QuantizerParams> ctx, LlamaConfig config, Scheme scheme,
      List<String> modules, CalibrationTokens tokens) throws StageException, InterruptedException {
    QuantizerParams params = ctx.params();
    boolean gptq = scheme == Scheme.W4_GPTQ;
    List<int[][]> batches = tokens == null ? List.of() : tokens.batches(MAX_BATCH_TOKENS, MAX_BATCH_ROWS);
    long batchTokens = 0;
    int batchRows = 0;
    for (int[][] b : batches) {
      batchTokens = Math.max(batchTokens, (long) b.length * b[0].length);
      batchRows = Math.max(batchRows, b.length);
    }
    MemoryPlan plan = MemoryPlan.estimate(config, tokens == null ? 0 : tokens.tokenCount(), batchTokens, batchRows,
        tokens == null ? 0 : tokens.longest(), gptq);
    String refusal = plan.refusal(ctx.memoryBudgetBytes());
    if (refusal != null) {
      throw StageException.fatal("quantizer " + scheme.id() + " " + refusal);
    }
    List<String> ignore = LlamaTensorNames.linearModules(config).stream().filter(m -> !modules.contains(m)).toList();
    QuantizationScheme format = new QuantizationScheme(scheme.kind(), params.groupSize(), false, ignore)
        .withSymmetric(params.symmetric()).withBits(params.bits()).withModelDtype(config);
    LayerQuantizer visitor = new LayerQuantizer(config, scheme, params, format, modules);
    Path out = ctx.scratch().resolve("quantized");
    Path work = ctx.workDir().resolve("quantizer-stream");
    boolean sequential = gptq && params.sequential();
    long started = System.nanoTime();
    double[] baseline = {-1};
    LayerStreamer.Progress progress = (layer, layers, step, fraction) -> {
      if (baseline[0] < 0) {
        baseline[0] = fraction;
      }
      double elapsed = (System.nanoTime() - started) / 1e9;
      String eta = fraction > baseline[0] + 1e-9
          ? ", eta " + duration(elapsed / (fraction - baseline[0]) * (1 - fraction)) : "";
      ctx.progress(2 + 96 * fraction, String.format(Locale.ROOT, "layer %d/%d: %s (%.0f%%%s)", layer + 1, layers,
          step, 100 * fraction, eta), Map.of("layers_done", (double) (int) Math.floor(fraction * layers + 1e-9)));
    };
    ctx.progress(1, "streaming " + ctx.inputModel().getFileName() + " scheme=" + scheme.id() + " sequential="
        + sequential + " plan " + MemoryPlan.gigabytes(plan.peakBytes()) + " of "
        + MemoryPlan.gigabytes(ctx.memoryBudgetBytes()));
    try {
      LayerStreamer.Result result = new LayerStreamer(ctx.inputModel(), config,
          LayerStreamer.Options.defaults().withSequential(sequential))
          .run(batches, visitor, out, work, fingerprint(ctx, config, tokens), progress);
      CompressedTensors.writeConfig(out, config.withTorchDtype(result.denseDtype().torchName()), format);
      Map<String, Double> metrics = new LinkedHashMap<>();
      long before = 0;
      long after = 0;
      try (Checkpoint written = Checkpoint.open(out)) {
        for (String module : modules) {
          long[] shape = LlamaTensorNames.shapes(config).get(LlamaTensorNames.weight(module));
          before += shape[0] * shape[1] * result.denseDtype().byteSize();
          for (String name : written.tensorNames().subSet(module + ".weight", module + ".weight\uffff")) {
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
      metrics.put("forward_seconds", result.forwardSeconds() - visitor.hessianSeconds());
      if (gptq) {
        metrics.put("hessian_gflop", visitor.hessianFlops() / 1e9);
        metrics.put("hessian_seconds", visitor.hessianSeconds());
        metrics.put("gptq_gflop", visitor.gptqFlops() / 1e9);
        metrics.put("gptq_seconds", visitor.gptqSeconds());
      }
      metrics.put("seconds", (System.nanoTime() - started) / 1e9);
      LOG.info("quantized stage=quantizer scheme={} streamed=true sequential={} layers={} bytesBefore={} bytesAfter={}",
          scheme.id(), sequential, modules.size(), before, after);
      ctx.progress(100, "wrote compressed-tensors checkpoint");
      return StageResult.of(List.of(new StageResult.Output(out, OUTPUT_FORMAT)), metrics);
    } catch (CheckpointException e) {
      throw StageException.fatal("cannot use the input checkpoint: " + e.getMessage(), e);
    } catch (IllegalArgumentException | IllegalStateException e) {
      throw StageException.fatal("quantizer " + scheme.id() + ": " + e.getMessage(), e);
    } catch (IOException e) {
      throw StageException.retryable("quantizer " + scheme.id() + " I/O failure: " + e.getMessage(), e);
    }
  }

  /**
   * The whole-model path holds every tensor in F32 (and its quantized and dequantized copies) and, for calibrated
   * schemes, every module's X^T X from the calibration artefact: refused up front when that exceeds the budget.
   */
  private static void checkInMemoryPlan(StageContext<QuantizerParams> ctx, LlamaConfig config, Scheme scheme)
      throws StageException {
    long params = 0;
    for (long[] shape : LlamaTensorNames.shapes(config).values()) {
      params += shape.length == 1 ? shape[0] : shape[0] * shape[1];
    }
    long grams = 0;
    if (scheme.needsCalibration()) {
      for (int layer = 0; layer < config.numHiddenLayers(); layer++) {
        for (Projection p : Projection.values()) {
          grams += (long) p.inFeatures(config) * p.inFeatures(config) * 8;
        }
      }
      grams += (long) config.hiddenSize() * config.hiddenSize() * 8;
    }
    long need = MemoryPlan.RUNTIME_BYTES + params * 4 * 3 + grams * 2;
    if (need > ctx.memoryBudgetBytes()) {
      throw StageException.fatal("quantizer " + scheme.id() + " needs " + MemoryPlan.gigabytes(need)
          + ", this worker has " + MemoryPlan.gigabytes(ctx.memoryBudgetBytes())
          + ": raise DISTILLERY_WORKER_MEMORY or lower samples/seqLen (this scheme holds the whole model in memory;"
          + " streamed schemes: " + STREAMED.stream().map(Scheme::id).toList() + ")");
    }
  }

  /** The calibration samples' token ids, or null when the calibration artefact carries none (or there is none). */
  private static CalibrationTokens readTokens(StageContext<QuantizerParams> ctx) throws StageException {
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

  /** Identifies what a streamed run computes, so that a resumed attempt reuses only matching finished layers. */
  private static String fingerprint(StageContext<QuantizerParams> ctx, LlamaConfig config, CalibrationTokens tokens)
      throws StageException {
    try {
      MessageDigest digest = MessageDigest.getInstance("SHA-256");
      digest.update(ctx.params().toString().getBytes(StandardCharsets.UTF_8));
      digest.update(ctx.inputModel().toAbsolutePath().toString().getBytes(StandardCharsets.UTF_8));
      digest.update(config.toJson().getBytes(StandardCharsets.UTF_8));
      if (tokens != null) {
        ByteBuffer buffer = ByteBuffer.allocate(4);
        for (int[] sample : tokens.samples()) {
          digest.update(buffer.clear().putInt(-sample.length).flip());
          for (int id : sample) {
            digest.update(buffer.clear().putInt(id).flip());
          }
        }
      }
      return HexFormat.of().formatHex(digest.digest());
    } catch (NoSuchAlgorithmException e) {
      throw StageException.fatal("no SHA-256 in this JVM", e);
    }
  }

  private static String duration(double seconds) {
    long s = Math.round(seconds);
    return s >= 3600 ? String.format(Locale.ROOT, "%dh%02dm", s / 3600, s % 3600 / 60)
        : s >= 60 ? String.format(Locale.ROOT, "%dm%02ds", s / 60, s % 60) : s + "s";
  }

  /** SmoothQuant on q/k/v (input_layernorm) and gate/up (post_attention_layernorm); static scales for all. */
  static void smooth(LlamaConfig config, Map<String, float[]> tensors, CalibrationStats stats, QuantizerParams params,
      List<String> modules, Map<String, Float> inputScales) {
    int hidden = config.hiddenSize();
    Map<String, float[]> smoothing = new LinkedHashMap<>();
    for (int layer = 0; layer < config.numHiddenLayers(); layer++) {
      List<Projection> attn = List.of(Projection.Q, Projection.K, Projection.V);
      List<Projection> mlp = List.of(Projection.GATE, Projection.UP);
      for (List<Projection> group : List.of(attn, mlp)) {
        String norm = group == attn ? LlamaTensorNames.inputLayernorm(layer)
            : LlamaTensorNames.postAttentionLayernorm(layer);
        List<float[]> weights = new ArrayList<>();
        int[] rows = new int[group.size()];
        for (int i = 0; i < group.size(); i++) {
          weights.add(tensors.get(LlamaTensorNames.weight(group.get(i).module(layer))));
          rows[i] = group.get(i).outFeatures(config);
        }
        float[] absMax = stats.layer(group.getFirst().module(layer)).absMax();
        float[] s = SmoothQuant.scales(absMax, weights, rows, hidden, params.alpha());
        SmoothQuant.fold(tensors.get(norm), weights, rows, hidden, s);
        for (Projection p : group) {
          smoothing.put(p.module(layer), s);
        }
      }
    }
    for (String module : modules) {
      LayerStats in = stats.layer(module);
      float[] w = tensors.get(LlamaTensorNames.weight(module));
      inputScales.put(module, params.inputScaleValue().choose(in, smoothing.get(module), w,
          w.length / in.inFeatures()).scale());
    }
  }

  /**
   * AWQ scales per decoder layer (Lin et al., arXiv 2306.00978, Section 3.2), each folded into the operator that
   * produces the scaled input so that the float model is unchanged: down_proj's 1/s into up_proj's output rows (its
   * input is act(gate) * up), o_proj's into v_proj's output rows (its input is softmax(QK^T) V, linear in V), gate/up's
   * into post_attention_layernorm, q/k/v's into input_layernorm. With grouped-query attention one v_proj row feeds the
   * same channel of every query head of its group, so o_proj's scales are tied across those heads (searched on the
   * group's mean activation). Returns the mean chosen exponent.
   */
  static double awqScale(LlamaConfig config, Map<String, float[]> tensors, CalibrationStats stats,
      QuantizerParams params, Set<String> quantized, Map<String, float[]> applied) {
    double ratioSum = 0;
    int searches = 0;
    int hidden = config.hiddenSize();
    for (int layer = 0; layer < config.numHiddenLayers(); layer++) {
      // a scale only helps a layer that is quantized: excluded ones are neither searched nor scaled
      String downModule = Projection.DOWN.module(layer);
      if (quantized.contains(downModule)) {
        AwqScaleSearch.Result r = search(List.of(tensors.get(LlamaTensorNames.weight(downModule))),
            new int[] {hidden}, config.intermediateSize(), stats.layer(downModule).meanAbs(), stats.layer(downModule),
            params);
        foldIntoUp(config, tensors, layer, r.scales());
        applied.put(downModule, r.scales());
        ratioSum += r.ratio();
        searches++;
      }

      String oModule = Projection.O.module(layer);
      if (quantized.contains(oModule)) {
        LayerStats oStats = stats.layer(oModule);
        AwqScaleSearch.Result ro = search(List.of(tensors.get(LlamaTensorNames.weight(oModule))), new int[] {hidden},
            config.attentionWidth(), tieAcrossQueryGroups(config, oStats.meanAbs()), oStats, params);
        foldIntoValue(config, tensors, layer, ro.scales());
        applied.put(oModule, ro.scales());
        ratioSum += ro.ratio();
        searches++;
      }

      for (List<Projection> group : List.of(List.of(Projection.GATE, Projection.UP),
          List.of(Projection.Q, Projection.K, Projection.V))) {
        String norm = group.getFirst() == Projection.GATE ? LlamaTensorNames.postAttentionLayernorm(layer)
            : LlamaTensorNames.inputLayernorm(layer);
        // every consumer of the norm is rescaled (the fold must keep the float model); the quantized ones are scored
        List<float[]> all = new ArrayList<>();
        int[] allRows = new int[group.size()];
        List<float[]> scored = new ArrayList<>();
        List<Integer> scoredRows = new ArrayList<>();
        for (int i = 0; i < group.size(); i++) {
          float[] w = tensors.get(LlamaTensorNames.weight(group.get(i).module(layer)));
          all.add(w);
          allRows[i] = group.get(i).outFeatures(config);
          if (quantized.contains(group.get(i).module(layer))) {
            scored.add(w);
            scoredRows.add(allRows[i]);
          }
        }
        if (scored.isEmpty()) {
          continue;
        }
        LayerStats s = stats.layer(group.getFirst().module(layer));
        AwqScaleSearch.Result g = search(scored, scoredRows.stream().mapToInt(Integer::intValue).toArray(), hidden,
            s.meanAbs(), s, params);
        SmoothQuant.fold(tensors.get(norm), all, allRows, hidden, g.scales());
        for (Projection p : group) {
          applied.put(p.module(layer), g.scales());
        }
        ratioSum += g.ratio();
        searches++;
      }
    }
    return searches == 0 ? 0 : ratioSum / searches;
  }

  /**
   * AWQ's clipping search ({@link AwqClipSearch}) on every quantized projection but q_proj and k_proj (whose error
   * reaches the output through the softmax of QK^T, so the authors leave them unclipped), in the input basis left by
   * the scale search. Returns the summed output error before and after, and the mean clip ratio.
   */
  static Map<String, Double> awqClip(Map<String, float[]> tensors, CalibrationStats stats, QuantizerParams params,
      List<String> quantized, Map<String, float[]> scales) {
    double before = 0;
    double after = 0;
    double ratios = 0;
    int clipped = 0;
    for (String module : quantized) {
      if (module.endsWith(".q_proj") || module.endsWith(".k_proj")) {
        continue;
      }
      LayerStats s = stats.layer(module);
      if (s.gram() == null) {
        continue; // calibrated without X^T X: nothing to score the clip ratios on
      }
      float[] w = tensors.get(LlamaTensorNames.weight(module));
      AwqClipSearch.Result r = AwqClipSearch.clip(w, w.length / s.inFeatures(), s.inFeatures(), params.groupSize(),
          s.gram(), scales.get(module), CLIP_STEPS, CLIP_MAX_SHRINK, params.bits());
      before += r.rtnError();
      after += r.clippedError();
      ratios += r.meanRatio();
      clipped++;
    }
    Map<String, Double> m = new LinkedHashMap<>();
    m.put("awq_clip_layers", (double) clipped);
    m.put("awq_clip_mean_ratio", clipped == 0 ? 1.0 : ratios / clipped);
    m.put("awq_clip_error_reduction", before == 0 ? 0.0 : 1 - after / before);
    return m;
  }

  /** down_proj's columns times s, up_proj's output rows divided by s: act(gate) * (up / s) * s is unchanged. */
  static void foldIntoUp(LlamaConfig config, Map<String, float[]> tensors, int layer, float[] s) {
    int hidden = config.hiddenSize();
    int inter = config.intermediateSize();
    scaleColumns(tensors.get(LlamaTensorNames.weight(Projection.DOWN.module(layer))), hidden, inter, s);
    float[] up = tensors.get(LlamaTensorNames.weight(Projection.UP.module(layer)));
    for (int row = 0; row < inter; row++) {
      for (int j = 0; j < hidden; j++) {
        up[row * hidden + j] /= s[row];
      }
    }
  }

  /**
   * o_proj's columns times s, v_proj's output rows (and bias) divided by s. Column h * headDim + d of o_proj reads
   * channel d of query head h, which is channel d of value head h / (heads / kvHeads): s must be equal across the
   * query heads of a group (see {@link #tieAcrossQueryGroups}), and v_proj's row is divided by that shared value.
   *
   * @throws IllegalArgumentException if s differs within a group of query heads
   */
  static void foldIntoValue(LlamaConfig config, Map<String, float[]> tensors, int layer, float[] s) {
    int hidden = config.hiddenSize();
    int headDim = config.headDim();
    int groups = config.numKeyValueGroups();
    int attention = config.attentionWidth();
    for (int c = 0; c < attention; c++) {
      int head = c / headDim;
      int first = (head / groups) * groups * headDim + c % headDim;
      if (s[c] != s[first]) {
        throw new IllegalArgumentException("o_proj scale of channel " + c + " differs from channel " + first
            + " that reads the same value head");
      }
    }
    scaleColumns(tensors.get(LlamaTensorNames.weight(Projection.O.module(layer))), hidden, attention, s);
    String vModule = Projection.V.module(layer);
    float[] v = tensors.get(LlamaTensorNames.weight(vModule));
    float[] bias = Projection.V.hasBias(config) ? tensors.get(LlamaTensorNames.bias(vModule)) : null;
    for (int kv = 0; kv < config.numKeyValueHeads(); kv++) {
      for (int d = 0; d < headDim; d++) {
        int row = kv * headDim + d;
        float scale = s[kv * groups * headDim + d];
        for (int j = 0; j < hidden; j++) {
          v[row * hidden + j] /= scale;
        }
        if (bias != null) {
          bias[row] /= scale;
        }
      }
    }
  }

  /**
   * Per o_proj input channel (h, d): the mean of {@code meanAbs} over channel d of every query head sharing h's value
   * head, so that the scales AWQ derives from it are equal within each group.
   */
  static float[] tieAcrossQueryGroups(LlamaConfig config, float[] meanAbs) {
    int headDim = config.headDim();
    int groups = config.numKeyValueGroups();
    float[] out = new float[meanAbs.length];
    for (int kv = 0; kv < config.numKeyValueHeads(); kv++) {
      for (int d = 0; d < headDim; d++) {
        double sum = 0;
        for (int g = 0; g < groups; g++) {
          sum += meanAbs[(kv * groups + g) * headDim + d];
        }
        for (int g = 0; g < groups; g++) {
          out[(kv * groups + g) * headDim + d] = (float) (sum / groups);
        }
      }
    }
    return out;
  }

  private static AwqScaleSearch.Result search(List<float[]> weights, int[] rows, int n, float[] meanAbs,
      LayerStats s, QuantizerParams params) {
    return AwqScaleSearch.search(weights, rows, n, meanAbs, s.gram(), s.sumSq(), params.groupSize(),
        params.awqGrid(), params.bits());
  }

  private static void scaleColumns(float[] w, int rows, int cols, float[] s) {
    for (int r = 0; r < rows; r++) {
      for (int j = 0; j < cols; j++) {
        w[r * cols + j] *= s[j];
      }
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

  /** Every tensor as floats; adds the stored bytes of the weights of {@code modules} to {@code weightBytes[0]}. */
  private static Map<String, float[]> readTensors(Path model, LlamaConfig config, List<String> modules,
      long[] weightBytes) throws StageException {
    Map<String, float[]> tensors = new LinkedHashMap<>();
    try (Checkpoint checkpoint = Checkpoint.open(model)) {
      for (String name : LlamaTensorNames.shapes(config).keySet()) {
        tensors.put(name, checkpoint.floats(name));
      }
      for (String module : modules) {
        String name = LlamaTensorNames.weight(module);
        weightBytes[0] += (long) tensors.get(name).length * checkpoint.info(name).dtype().byteSize();
      }
      return tensors;
    } catch (CheckpointException e) {
      throw StageException.fatal("cannot use the input checkpoint: " + e.getMessage(), e);
    } catch (IOException e) {
      throw StageException.retryable("cannot read the input checkpoint: " + e.getMessage(), e);
    }
  }
}
