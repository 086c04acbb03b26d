package io.distillery.pruner.wanda;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import java.util.HashMap;
import java.util.Map;
import java.util.Set;

/**
 * Wanda's ||X_j||_2 for the inputs of one streamed decoder layer's linear modules: per input
 * channel sum of x^2 over the calibration tokens, accumulated batch by batch in float64 (as the
 * calibrator's statistics are, so a one-pass stream gives the whole-model path's norms). Modules
 * handed the very tensor the previous module was handed (q/k/v, gate/up) share one sum. Holds one
 * layer's sums at a time (a few vectors of the input width): the owner takes each out.
 */
public final class InputNorms {

  private final Set<String> modules;
  private final Map<String, double[]> byModule = new HashMap<>();
  private NDArray lastInput;
  private double[] lastSum;

  /**
   * @param modules the modules to accumulate (others are ignored)
   */
  public InputNorms(Set<String> modules) {
    this.modules = Set.copyOf(modules);
  }

  /** Adds one batch of {@code module}'s input, {@code [..., n]}. */
  public void add(String module, NDArray input) {
    if (!modules.contains(module)) {
      return;
    }
    double[] sum = byModule.get(module);
    if (input == lastInput && lastSum != null) {
      if (sum == null) {
        byModule.put(module, lastSum);
        return;
      }
      if (sum == lastSum) {
        return;
      }
    }
    long[] shape = input.getShape().getShape();
    int n = Math.toIntExact(shape[shape.length - 1]);
    double[] batch;
    try (NDManager step = input.getManager().newSubManager()) {
      NDArray x = input.reshape(input.size() / n, n).toType(DataType.FLOAT64, false);
      x.attach(step);
      NDArray sq = x.square().sum(new int[] {0});
      batch = sq.toDoubleArray();
    }
    if (sum == null) {
      sum = new double[n];
      byModule.put(module, sum);
    }
    if (sum.length != n) {
      throw new IllegalArgumentException(
          module + ": input width changed from " + sum.length + " to " + n);
    }
    for (int j = 0; j < n; j++) {
      sum[j] += batch[j];
    }
    lastInput = input;
    lastSum = sum;
  }

  /** Forgets the last tensor seen, so one of the next batch is never mistaken for it. */
  public void endOfBatch() {
    lastInput = null;
    lastSum = null;
  }

  /**
   * ||X_j||_2 of {@code module}'s input channels, rounded as the calibrator stores them (the sum as
   * F32, its square root as F32: {@code LayerStats.l2Norm}).
   *
   * @throws IllegalStateException if the module's input was never observed
   */
  public float[] take(String module) {
    double[] sum = byModule.remove(module);
    if (sum == null) {
      throw new IllegalStateException("no input of " + module + " was observed");
    }
    float[] norm = new float[sum.length];
    for (int j = 0; j < sum.length; j++) {
      norm[j] = (float) Math.sqrt((float) sum[j]);
    }
    return norm;
  }
}
