package io.distillery.model.stream;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import java.nio.ByteOrder;
import java.nio.DoubleBuffer;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Set;

/**
 * X^T X of the inputs of one decoder layer's linear modules, accumulated batch by batch as a DJL
 * matrix product in float64 (so the sums match the calibrator's double accumulation to rounding),
 * for GPTQ's Hessian H = 2 X^T X / tokens (Frantar et al., arXiv 2210.17323, Section 2). Modules
 * handed the very tensor the previous module was handed (q/k/v read one normed hidden state,
 * gate/up another) share one accumulation. Holds one layer's Hessians at a time: the owner takes
 * each out ({@link #take}) and frees it before the next layer.
 */
public final class HessianAccumulator implements AutoCloseable {

  private final NDManager manager;
  private final Set<String> modules;
  private final Map<String, Sum> byModule = new LinkedHashMap<>();
  private final Map<Sum, Integer> owners = new HashMap<>();
  private NDArray lastInput;
  private Sum lastSum;
  private double flops;

  /** One distinct input's running X^T X and its token count. */
  private static final class Sum {
    NDArray gram;
    long tokens;
    final int width;

    Sum(int width) {
      this.width = width;
    }
  }

  /**
   * @param parent the accumulations live in a sub-manager of it, freed by {@link #close()}
   * @param modules the modules to accumulate (others are ignored)
   */
  public HessianAccumulator(NDManager parent, Set<String> modules) {
    this.manager = parent.newSubManager();
    this.manager.setName("hessians");
    this.modules = Set.copyOf(modules);
  }

  /** Adds one batch of {@code module}'s input, {@code [..., n]}. */
  public void add(String module, NDArray input) {
    if (!modules.contains(module)) {
      return;
    }
    Sum sum = byModule.get(module);
    if (input == lastInput && lastSum != null) {
      if (sum == null) { // reads the tensor the previous module read: share its accumulation
        byModule.put(module, lastSum);
        owners.merge(lastSum, 1, Integer::sum);
        return;
      }
      if (sum == lastSum) {
        return; // already added under the module it shares with
      }
    }
    long[] shape = input.getShape().getShape();
    int n = Math.toIntExact(shape[shape.length - 1]);
    long rows = input.size() / n;
    if (sum == null) {
      sum = new Sum(n);
      byModule.put(module, sum);
      owners.put(sum, 1);
    }
    if (sum.width != n) {
      throw new IllegalArgumentException(
          module + ": input width changed from " + sum.width + " to " + n);
    }
    try (NDManager step = manager.newSubManager()) {
      NDArray x = input.reshape(rows, n).toType(DataType.FLOAT64, false);
      x.attach(step);
      NDArray gram = x.transpose().matMul(x);
      if (sum.gram == null) {
        gram.attach(manager);
        sum.gram = gram;
      } else {
        sum.gram.addi(gram);
      }
    }
    sum.tokens += rows;
    flops += 2.0 * rows * n * n;
    lastInput = input;
    lastSum = sum;
  }

  /** Forgets the last tensor seen, so one of the next batch is never mistaken for it. */
  public void endOfBatch() {
    lastInput = null;
    lastSum = null;
  }

  /**
   * Floating-point operations spent in the products so far (2 x tokens x n^2 per distinct input).
   */
  public double flops() {
    return flops;
  }

  /** Token rows seen by {@code module}, 0 if none. */
  public long tokens(String module) {
    Sum s = byModule.get(module);
    return s == null ? 0 : s.tokens;
  }

  /**
   * GPTQ's H = 2 X^T X / tokens of {@code module}, {@code n x n} row-major, rounded to float32 (the
   * precision GPTQ and SparseGPT solve in) from the float64 sums, which are read in place from the
   * engine's memory: the one new array is the result. The accumulation is freed once every module
   * sharing it has taken it.
   *
   * @throws IllegalStateException if the module's input was never observed
   */
  public float[] take(String module) {
    Sum sum = byModule.remove(module);
    if (sum == null || sum.gram == null) {
      throw new IllegalStateException("no input of " + module + " was observed");
    }
    DoubleBuffer gram = sum.gram.toByteBuffer(true).order(ByteOrder.nativeOrder()).asDoubleBuffer();
    float[] h = new float[gram.remaining()];
    double s = 2.0 / sum.tokens;
    for (int i = 0; i < h.length; i++) {
      h[i] = (float) (gram.get(i) * s);
    }
    if (owners.merge(sum, -1, Integer::sum) == 0) {
      owners.remove(sum);
      sum.gram.close();
      sum.gram = null;
    }
    return h;
  }

  @Override
  public void close() {
    manager.close();
  }
}
