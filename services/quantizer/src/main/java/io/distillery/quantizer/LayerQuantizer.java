package io.distillery.quantizer;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import io.distillery.model.config.LlamaConfig;
import io.distillery.model.config.LlamaTensorNames;
import io.distillery.model.config.Projection;
import io.distillery.model.quant.CompressedTensors;
import io.distillery.model.quant.QuantizationScheme;
import io.distillery.model.quant.QuantizedWeight;
import io.distillery.model.stream.HessianAccumulator;
import io.distillery.model.stream.LayerVisitor;
import io.distillery.model.stream.LayerWeights;
import io.distillery.quantizer.gptq.Gptq;
import io.distillery.quantizer.rtn.RoundToNearest;
import java.util.HashSet;
import java.util.List;
import java.util.Set;

/**
 * The quantizer's work on one streamed decoder layer: round-to-nearest (w8-rtn, w4-rtn, fp8) or
 * GPTQ (w4-gptq, on the Hessians of the layer's inputs accumulated while the calibration batch
 * passes through it). Each quantized module is emitted in compressed-tensors' layout ({@link
 * CompressedTensors#moduleTensors}) and its dense weight replaced by the dequantized one, which the
 * sequential re-run computes with. Holds one layer's Hessians at a time.
 */
final class LayerQuantizer implements LayerVisitor {

  private final LlamaConfig config;
  private final Scheme scheme;
  private final QuantizerParams params;
  private final QuantizationScheme format;
  private final Set<String> modules;
  private NDManager manager;
  private HessianAccumulator hessians;
  private int layersQuantized;
  private long modulesQuantized;
  private long bytesBefore;
  private long bytesAfter;
  private double gptqFlops;
  private long gptqNanos;
  private long hessianNanos;
  private double hessianFlops;

  LayerQuantizer(
      LlamaConfig config,
      Scheme scheme,
      QuantizerParams params,
      QuantizationScheme format,
      List<String> modules) {
    this.config = config;
    this.scheme = scheme;
    this.params = params;
    this.format = format;
    this.modules = new HashSet<>(modules);
  }

  @Override
  public boolean observes() {
    return scheme == Scheme.W4_GPTQ;
  }

  @Override
  public void observe(int layer, String module, NDArray input) {
    if (hessians == null) {
      manager = Engine.getEngine("PyTorch").newBaseManager();
      hessians = new HessianAccumulator(manager, modules);
    }
    long t0 = System.nanoTime();
    hessians.add(module, input);
    hessianNanos += System.nanoTime() - t0;
  }

  @Override
  public void endOfBatch(int layer) {
    if (hessians != null) {
      hessians.endOfBatch();
    }
  }

  @Override
  public void rewrite(LayerWeights weights, StepListener step) {
    int layer = weights.layer();
    Projection[] projections = Projection.values();
    try {
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
            0.05 + 0.9 * i / projections.length);
        float[] w = weights.get(name);
        QuantizedWeight q;
        if (scheme == Scheme.W4_GPTQ) {
          if (hessians == null) {
            throw new IllegalStateException("no calibration input reached layer " + layer);
          }
          double[] h = hessians.take(module);
          long t0 = System.nanoTime();
          q =
              Gptq.quantize(
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
        } else {
          q =
              RoundToNearest.quantize(
                  scheme.kind(),
                  w,
                  rows,
                  cols,
                  params.groupSize(),
                  params.bits(),
                  params.symmetric());
        }
        weights.emit(module, CompressedTensors.moduleTensors(module, q, null, format));
        weights.set(name, q.dequantize());
        bytesBefore += (long) rows * cols * 4;
        bytesAfter += q.storageBytes();
        modulesQuantized++;
      }
      layersQuantized++;
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
