package io.distillery.pruner;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import io.distillery.model.config.LlamaTensorNames;
import io.distillery.model.config.Projection;
import io.distillery.model.stream.HessianAccumulator;
import io.distillery.model.stream.LayerVisitor;
import io.distillery.model.stream.LayerWeights;
import io.distillery.pruner.magnitude.MagnitudePruner;
import io.distillery.pruner.sparsegpt.SparseGptPruner;
import io.distillery.pruner.wanda.InputNorms;
import io.distillery.pruner.wanda.WandaPruner;
import java.util.HashSet;
import java.util.List;
import java.util.Set;

/**
 * The pruner's work on one streamed decoder layer: magnitude (no calibration), Wanda (on the
 * per-channel norms of the layer's linear inputs) or SparseGPT (on their Hessians X^T X),
 * accumulated while the calibration batch passes through the layer. The pruned weights replace the
 * dense ones in place, so the sequential re-run computes with them and the streamer writes them in
 * the input's dtype. The math is the whole-model path's ({@link MagnitudePruner}, {@link
 * WandaPruner}, {@link SparseGptPruner}), handed this layer's statistics. Holds one layer's
 * statistics at a time.
 */
final class LayerPruner implements LayerVisitor {

  private final PrunerParams params;
  private final Set<String> modules;
  private NDManager manager;
  private HessianAccumulator hessians;
  private InputNorms norms;
  private long hessianNanos;
  private double hessianFlops;
  private long pruneNanos;

  LayerPruner(PrunerParams params, List<String> modules) {
    this.params = params;
    this.modules = new HashSet<>(modules);
  }

  @Override
  public boolean observes() {
    return !params.method().equals("magnitude");
  }

  @Override
  public void observe(int layer, String module, NDArray input) {
    long t0 = System.nanoTime();
    if (params.method().equals("sparsegpt")) {
      if (hessians == null) {
        manager = Engine.getEngine("PyTorch").newBaseManager();
        hessians = new HessianAccumulator(manager, modules);
      }
      hessians.add(module, input);
    } else {
      if (norms == null) {
        norms = new InputNorms(modules);
      }
      norms.add(module, input);
    }
    hessianNanos += System.nanoTime() - t0;
  }

  @Override
  public void endOfBatch(int layer) {
    if (hessians != null) {
      hessians.endOfBatch();
    }
    if (norms != null) {
      norms.endOfBatch();
    }
  }

  @Override
  public void rewrite(LayerWeights weights, StepListener step) {
    int layer = weights.layer();
    try {
      LinearPruner pruner = pruner(layer);
      Projection[] projections = Projection.values();
      for (int i = 0; i < projections.length; i++) {
        String module = projections[i].module(layer);
        if (!modules.contains(module)) {
          continue;
        }
        String name = LlamaTensorNames.weight(module);
        long[] shape = weights.shape(name);
        step.step(
            params.method() + " " + module.substring(LlamaTensorNames.layerPrefix(layer).length()),
            0.05 + 0.9 * i / projections.length);
        long t0 = System.nanoTime();
        weights.set(
            name,
            pruner.prune(
                module, weights.get(name), Math.toIntExact(shape[0]), Math.toIntExact(shape[1])));
        pruneNanos += System.nanoTime() - t0;
      }
    } finally {
      if (hessians != null) {
        hessianFlops += hessians.flops();
        hessians.close();
        manager.close();
        hessians = null;
        manager = null;
      }
      norms = null;
    }
  }

  private LinearPruner pruner(int layer) {
    SparsityPattern pattern = params.sparsityPattern();
    return switch (params.method()) {
      case "magnitude" -> new MagnitudePruner(pattern);
      case "wanda" -> {
        InputNorms n = observed(norms, layer);
        yield new WandaPruner(pattern, n::take);
      }
      case "sparsegpt" -> {
        HessianAccumulator h = observed(hessians, layer);
        yield new SparseGptPruner(pattern, h::take, params.damp(), params.blockSize());
      }
      default ->
          throw new IllegalStateException(
              "method " + params.method() + " does not run on the layer-streaming executor");
    };
  }

  private static <T> T observed(T statistics, int layer) {
    if (statistics == null) {
      throw new IllegalStateException("no calibration input reached layer " + layer);
    }
    return statistics;
  }

  /** Wall time of the statistics (norms or X^T X), part of the forward passes' time. */
  double statisticsSeconds() {
    return hessianNanos / 1e9;
  }

  /** X^T X products (float64) for SparseGPT. */
  double hessianFlops() {
    return hessianFlops;
  }

  double pruneSeconds() {
    return pruneNanos / 1e9;
  }
}
