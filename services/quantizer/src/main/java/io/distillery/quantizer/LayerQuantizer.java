package io.distillery.quantizer;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import io.distillery.model.calib.CalibrationStats;
import io.distillery.model.config.LlamaConfig;
import io.distillery.model.config.LlamaTensorNames;
import io.distillery.model.config.Projection;
import io.distillery.model.quant.CompressedTensors;
import io.distillery.model.quant.QuantizationScheme;
import io.distillery.model.quant.QuantizedWeight;
import io.distillery.model.quant.StaticActivationQuantization;
import io.distillery.model.safetensors.TensorData;
import io.distillery.model.safetensors.TensorSource;
import io.distillery.model.stream.HessianAccumulator;
import io.distillery.model.stream.LayerVisitor;
import io.distillery.model.stream.LayerWeights;
import io.distillery.quantizer.awq.AwqModel;
import io.distillery.quantizer.gptq.Gptq;
import io.distillery.quantizer.rtn.RoundToNearest;
import io.distillery.quantizer.smoothquant.SmoothQuantModel;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.SequencedMap;
import java.util.Set;

/**
 * The quantizer's work on one streamed decoder layer: round-to-nearest (w8-rtn, w4-rtn, fp8), GPTQ
 * (w4-gptq, on the Hessians of the layer's inputs accumulated while the calibration batch passes
 * through it), AWQ (w4-awq: {@link AwqModel#scaleLayer} and {@link AwqModel#clipModules} on the
 * statistics of the layer's inputs, then round-to-nearest) or SmoothQuant (w8a8-smoothquant: {@link
 * SmoothQuantModel#smoothLayer}, per-channel INT8 weights and static input scales from the same
 * statistics). Each quantized module is emitted in compressed-tensors' layout ({@link
 * CompressedTensors#moduleTensors}) and its dense weight replaced by the dequantized one, which the
 * sequential re-run computes with (for W8A8 with its static INT8 input quantization simulated, as
 * the deployed layer computes). Scales folded into a norm or a linear of the layer change that
 * tensor in place, so the output and the re-run carry the fold. Holds one layer's Hessians or
 * statistics at a time.
 */
final class LayerQuantizer implements LayerVisitor {

  private final LlamaConfig config;
  private final Scheme scheme;
  private final QuantizerParams params;
  private final QuantizationScheme format;
  private final Set<String> modules;
  private final LayerInputStatistics statistics;
  private final AwqModel.Summary awq = new AwqModel.Summary();
  private NDManager manager;
  private HessianAccumulator hessians;
  private StaticActivationQuantization rerunInputs;
  private int rerunLayer = -1;
  private int layersQuantized;
  private long modulesQuantized;
  private long bytesBefore;
  private long bytesAfter;
  private double gptqFlops;
  private long gptqNanos;
  private long hessianNanos;
  private double hessianFlops;
  private long statisticsNanos;
  private long searchNanos;

  /**
   * @param histogramBins |x| histogram bins of the per-layer statistics (AWQ, SmoothQuant): the
   *     calibrator's
   */
  LayerQuantizer(
      LlamaConfig config,
      Scheme scheme,
      QuantizerParams params,
      QuantizationScheme format,
      List<String> modules,
      int histogramBins) {
    this.config = config;
    this.scheme = scheme;
    this.params = params;
    this.format = format;
    this.modules = new HashSet<>(modules);
    this.statistics =
        switch (scheme) {
          case W4_AWQ -> new LayerInputStatistics(histogramBins, this.modules);
          case W8A8_SMOOTHQUANT -> new LayerInputStatistics(histogramBins, Set.of());
          default -> null;
        };
  }

  @Override
  public boolean observes() {
    return scheme.needsCalibration();
  }

  @Override
  public void observe(int layer, String module, NDArray input) {
    long t0 = System.nanoTime();
    if (statistics != null) {
      statistics.add(module, input);
      statisticsNanos += System.nanoTime() - t0;
      return;
    }
    if (hessians == null) {
      manager = Engine.getEngine("PyTorch").newBaseManager();
      hessians = new HessianAccumulator(manager, modules);
    }
    hessians.add(module, input);
    hessianNanos += System.nanoTime() - t0;
  }

  @Override
  public void endOfBatch(int layer) {
    if (hessians != null) {
      hessians.endOfBatch();
    }
    if (statistics != null) {
      statistics.endOfBatch();
    }
  }

  @Override
  public NDArray rerunInput(int layer, String module, NDArray input) {
    return rerunInputs != null && layer == rerunLayer ? rerunInputs.apply(module, input) : input;
  }

  @Override
  public void rewrite(LayerWeights weights, StepListener step) {
    int layer = weights.layer();
    Projection[] projections = Projection.values();
    rerunInputs = null;
    rerunLayer = -1;
    try {
      List<String> layerModules = new ArrayList<>();
      for (Projection p : projections) {
        if (modules.contains(p.module(layer))) {
          layerModules.add(p.module(layer));
        }
      }
      Map<String, Float> inputScales = activationAware(weights, layerModules, step);
      double first = statistics == null ? 0.05 : scheme == Scheme.W4_AWQ ? 0.6 : 0.15;
      for (int i = 0; i < projections.length; i++) {
        String module = projections[i].module(layer);
        if (!modules.contains(module)) {
          continue;
        }
        String name = LlamaTensorNames.weight(module);
        long[] shape = weights.shape(name);
        int rows = Math.toIntExact(shape[0]);
        int cols = Math.toIntExact(shape[1]);
        String shortName = module.substring(LlamaTensorNames.layerPrefix(layer).length());
        step.step(
            (scheme == Scheme.W4_GPTQ ? "gptq " : scheme.id() + " ") + shortName,
            first + (0.95 - first) * i / projections.length);
        QuantizedWeight q = null;
        SequencedMap<String, TensorSource> tensors = null;
        TensorData stored = weights.stored(name);
        if (stored != null
            && scheme.kind() == QuantizedWeight.Kind.INT8_CHANNEL
            && !inputScales.containsKey(module)) {
          // w8-rtn from the stored bytes: codes packed one byte each, never widened whole
          tensors = CompressedTensors.int8ChannelTensors(module, stored, format);
        } else if (scheme == Scheme.W4_GPTQ) {
          float[] w = weights.get(name);
          if (hessians == null) {
            throw new IllegalStateException("no calibration input reached layer " + layer);
          }
          float[] h = hessians.take(module);
          long t0 = System.nanoTime();
          q =
              Gptq.quantizeConsuming(
                  w,
                  rows,
                  cols,
                  h,
                  params.groupSize(),
                  params.damp(),
                  params.actOrder(),
                  params.bits(),
                  params.symmetric());
          gptqNanos += System.nanoTime() - t0;
          // as /work/shared/SCALE.md counts it: the row updates (2 x rows x cols^2) and a Cholesky
          // (cols^3 / 3)
          gptqFlops += 2.0 * rows * cols * cols + (double) cols * cols * cols / 3;
        } else if (stored != null) { // not widened: nothing runs forward or changed it
          q =
              RoundToNearest.quantize(
                  scheme.kind(), stored, params.groupSize(), params.bits(), params.symmetric());
        } else {
          q =
              RoundToNearest.quantize(
                  scheme.kind(),
                  weights.get(name),
                  rows,
                  cols,
                  params.groupSize(),
                  params.bits(),
                  params.symmetric());
        }
        if (tensors == null) {
          tensors = CompressedTensors.moduleTensors(module, q, inputScales.get(module), format);
        }
        weights.emit(module, tensors);
        if (weights.reruns()) { // else nothing computes with it again (and stored was null)
          weights.set(name, q.dequantize());
        }
        bytesBefore += (long) rows * cols * 4;
        // per-channel INT8: a byte a code and an F32 scale a row, as QuantizedWeight counts it
        bytesAfter += q == null ? (long) rows * cols + 4L * rows : q.storageBytes();
        modulesQuantized++;
      }
      layersQuantized++;
      if (!inputScales.isEmpty()) {
        rerunInputs = new StaticActivationQuantization(inputScales);
        rerunLayer = layer;
      }
    } finally {
      if (hessians != null) {
        hessianFlops += hessians.flops();
        hessians.close();
        manager.close();
        hessians = null;
        manager = null;
      }
    }
  }

  /**
   * AWQ's scale and clip searches or SmoothQuant's smoothing on this layer, folded into its tensors
   * in place, from the statistics of its inputs observed in this pass; returns the static input
   * scales (W8A8) by module, empty for the weight-only schemes.
   */
  private Map<String, Float> activationAware(
      LayerWeights weights, List<String> layerModules, StepListener step) {
    if (statistics == null) {
      return Map.of();
    }
    int layer = weights.layer();
    CalibrationStats stats = statistics.take(layer);
    Map<String, float[]> tensors = new HashMap<>();
    for (String name : weights.names()) {
      tensors.put(name, weights.get(name)); // the live arrays: the folds change them in place
    }
    long t0 = System.nanoTime();
    Map<String, float[]> scales = new HashMap<>();
    Map<String, Float> inputScales = new LinkedHashMap<>();
    if (scheme == Scheme.W4_AWQ) {
      AwqModel.Settings settings =
          new AwqModel.Settings(params.groupSize(), params.awqGrid(), params.bits());
      step.step("awq scales", 0.06);
      AwqModel.scaleLayer(config, layer, tensors, stats, settings, modules, scales, awq);
      step.step("awq clip", 0.45);
      AwqModel.clipModules(tensors, stats, settings, layerModules, scales, awq);
    } else {
      step.step("smooth", 0.06);
      SmoothQuantModel.smoothLayer(config, layer, tensors, stats, params.alpha(), scales);
      SmoothQuantModel.inputScales(
          tensors, stats, params.inputScaleValue(), layerModules, scales, inputScales);
    }
    searchNanos += System.nanoTime() - t0;
    return inputScales;
  }

  /** AWQ's metrics over the layers searched in this run (empty for the other schemes). */
  Map<String, Double> awqMetrics() {
    return scheme == Scheme.W4_AWQ ? awq.metrics() : Map.of();
  }

  /** Time spent gathering AWQ's or SmoothQuant's statistics, part of the observe passes' time. */
  double statisticsSeconds() {
    return statisticsNanos / 1e9;
  }

  /** X^T X products of AWQ's statistics (f32 on the engine, summed in f64). */
  double statisticsGramFlops() {
    return statistics == null ? 0 : statistics.gramFlops();
  }

  /** Time in AWQ's scale and clip searches or SmoothQuant's smoothing and input scales. */
  double searchSeconds() {
    return searchNanos / 1e9;
  }

  long modulesQuantized() {
    return modulesQuantized;
  }

  int layersQuantized() {
    return layersQuantized;
  }

  /** F32 bytes of the quantized weights (the caller rescales to the stored dtype). */
  long f32BytesBefore() {
    return bytesBefore;
  }

  long bytesAfter() {
    return bytesAfter;
  }

  double gptqFlops() {
    return gptqFlops;
  }

  double gptqSeconds() {
    return gptqNanos / 1e9;
  }

  /** X^T X products (float64), part of the observe passes' time. */
  double hessianFlops() {
    return hessianFlops;
  }

  double hessianSeconds() {
    return hessianNanos / 1e9;
  }
}
