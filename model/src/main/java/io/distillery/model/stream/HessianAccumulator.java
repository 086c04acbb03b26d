package io.distillery.model.stream;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.index.NDIndex;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
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

  /** Largest float64 piece of one product: a row chunk of the input, or a column chunk (64 MB). */
  static final long CHUNK_DOUBLES = 1L << 23;

  private final NDManager manager;
  private final long chunkDoubles;
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
    this(parent, modules, CHUNK_DOUBLES);
  }

  /** As above, with products in chunks of at most {@code chunkDoubles} (tests use small ones). */
  HessianAccumulator(NDManager parent, Set<String> modules, long chunkDoubles) {
    if (chunkDoubles < 1) {
      throw new IllegalArgumentException("chunkDoubles must be positive, got " + chunkDoubles);
    }
    this.chunkDoubles = chunkDoubles;
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
    if (sum.gram == null) {
      sum.gram = manager.zeros(new Shape(n, n), DataType.FLOAT64);
    }
    // in row and column chunks of at most chunkDoubles each, added into the sum in place: the
    // whole product at once held a float64 copy of the batch and an n x n product beside the sum
    // (805 MB more at Llama-3.2-1B's down_proj with 4096 tokens a batch; 128 MB this way)
    int rowChunk = (int) Math.max(1, Math.min(rows, chunkDoubles / n));
    int colChunk = (int) Math.max(1, Math.min(n, chunkDoubles / n));
    try (NDManager step = manager.newSubManager()) {
      NDArray flat = input.reshape(rows, n);
      flat.attach(step);
      for (long r0 = 0; r0 < rows; r0 += rowChunk) {
        try (NDManager chunk = step.newSubManager()) {
          NDArray part = flat.get(new NDIndex("{}:{}", r0, Math.min(rows, r0 + rowChunk)));
          part.attach(chunk);
          NDArray x = part.toType(DataType.FLOAT64, false);
          x.attach(chunk);
          NDArray xt = x.transpose();
          xt.attach(chunk);
          for (int c0 = 0; c0 < n; c0 += colChunk) {
            NDIndex columns = new NDIndex(":, {}:{}", c0, Math.min(n, c0 + colChunk));
            NDArray block = x.get(columns);
            block.attach(chunk);
            NDArray product = xt.matMul(block);
            product.attach(chunk);
            try (NDArray target = sum.gram.get(columns)) { // a view: adds into the sum
              target.addi(product);
            }
            product.close();
            block.close();
          }
        }
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
