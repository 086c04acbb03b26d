package io.distillery.model.llama;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDArrays;
import ai.djl.ndarray.NDList;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.index.NDIndex;
import ai.djl.ndarray.types.Shape;
import ai.djl.nn.Activation;
import io.distillery.model.config.LlamaConfig;
import io.distillery.model.config.LlamaTensorNames;
import io.distillery.model.config.Projection;

/**
 * One Llama decoder layer's forward pass, the single implementation that {@link LlamaModel} runs
 * for every layer and the layer-streaming executor ({@code
 * io.distillery.model.stream.LayerStreamer}) runs for the one layer it holds:
 *
 * <pre>
 * h += o_proj(attention(rope(q_proj(n)), rope(k_proj(n)), v_proj(n)))   n = rmsnorm(h)
 * h += down_proj(silu(gate_proj(n)) * up_proj(n))                         n = rmsnorm(h)
 * </pre>
 *
 * Where its weights come from and how a linear layer is applied (observed, transformed) is the
 * caller's: a {@link Weights} lookup and a {@link LinearOp}. Also holds the position tables (RoPE,
 * causal mask) a layer needs.
 */
public final class DecoderLayer {

  /** A weight by its transformers name. */
  @FunctionalInterface
  public interface Weights {
    NDArray get(String name);
  }

  /**
   * Applies linear module {@code module}: {@code input W^T + b} (bias may be null), after any
   * observation.
   */
  @FunctionalInterface
  public interface LinearOp {
    NDArray apply(String module, NDArray input, NDArray weight, NDArray bias);
  }

  private final LlamaConfig config;
  private final int index;
  private final String[] modules;
  private final String[] weights;
  private final String[] biases;
  private final String inputNorm;
  private final String postNorm;
  private final NDIndex firstHalf;
  private final NDIndex secondHalf;

  public DecoderLayer(LlamaConfig config, int index) {
    if (index < 0 || index >= config.numHiddenLayers()) {
      throw new IllegalArgumentException(
          "layer " + index + " is outside [0, " + config.numHiddenLayers() + ")");
    }
    this.config = config;
    this.index = index;
    Projection[] projections = Projection.values();
    this.modules = new String[projections.length];
    this.weights = new String[projections.length];
    this.biases = new String[projections.length];
    for (Projection p : projections) {
      modules[p.ordinal()] = p.module(index);
      weights[p.ordinal()] = LlamaTensorNames.weight(modules[p.ordinal()]);
      biases[p.ordinal()] = p.hasBias(config) ? LlamaTensorNames.bias(modules[p.ordinal()]) : null;
    }
    this.inputNorm = LlamaTensorNames.inputLayernorm(index);
    this.postNorm = LlamaTensorNames.postAttentionLayernorm(index);
    int half = config.headDim() / 2;
    this.firstHalf = new NDIndex("..., :" + half);
    this.secondHalf = new NDIndex("..., " + half + ":");
  }

  public int index() {
    return index;
  }

  /**
   * {@code [batch, seq, hidden]} in, {@code [batch, seq, hidden]} out, attached to {@code h}'s
   * manager. Every intermediate is closed as soon as the next step has consumed it (the engine
   * frees a tensor's memory when no handle or view refers to it, and autograd keeps what backward
   * needs), so a batch holds a few activations at a time rather than all of them: with 8 x 512
   * tokens at Llama-3.2-1B's width, keeping every intermediate until the caller's scope closed held
   * about 2 GB (four 268 MB attention-score arrays, four 134 MB MLP arrays and the rest).
   *
   * @param cos RoPE table {@code [seq, head_dim]} for the positions of {@code h}
   * @param mask additive attention mask, or null when everything is visible
   * @param cache the model's KV cache, or null
   */
  public NDArray forward(
      NDManager scope,
      Weights w,
      LinearOp linear,
      NDArray h,
      int batch,
      int seq,
      NDArray cos,
      NDArray sin,
      NDArray mask,
      KvCache cache) {
    int heads = config.numAttentionHeads();
    int kvHeads = config.numKeyValueHeads();
    int headDim = config.headDim();

    NDArray x = rmsNorm(h, w.get(inputNorm), config.rmsNormEps());
    NDArray q = heads(project(w, linear, Projection.Q, x), batch, seq, heads, headDim);
    NDArray k = heads(project(w, linear, Projection.K, x), batch, seq, kvHeads, headDim);
    NDArray v = heads(project(w, linear, Projection.V, x), batch, seq, kvHeads, headDim);
    x.close();
    q = applyRope(q, cos, sin);
    k = applyRope(k, cos, sin);
    NDArray keys = k;
    NDArray values = v;
    if (cache != null) { // the cache owns k and v from here (and keys and values)
      NDArray[] all = cache.append(index, k, v);
      keys = all[0];
      values = all[1];
    }
    int groups = config.numKeyValueGroups();
    if (groups > 1) {
      NDArray repeatedKeys = own(scope, keys.repeat(1, groups));
      NDArray repeatedValues = own(scope, values.repeat(1, groups));
      if (cache == null) {
        keys.close();
        values.close();
      }
      keys = repeatedKeys;
      values = repeatedValues;
    }
    boolean ownsKeys = cache == null || groups > 1;
    NDArray transposed = own(scope, keys.transpose(0, 1, 3, 2));
    NDArray products = q.matMul(transposed);
    q.close();
    transposed.close();
    if (ownsKeys) {
      keys.close();
    }
    NDArray scores = consume(products, products.mul((float) (1.0 / Math.sqrt(headDim))));
    if (mask != null) {
      scores = consume(scores, scores.add(mask));
    }
    NDArray probabilities = consume(scores, scores.softmax(-1));
    NDArray mixed = consume(probabilities, probabilities.matMul(values));
    if (ownsKeys) {
      values.close();
    }
    NDArray swapped = consume(mixed, mixed.transpose(0, 2, 1, 3));
    NDArray attention = consume(swapped, swapped.reshape(batch, seq, (long) heads * headDim));
    NDArray o = consume(attention, project(w, linear, Projection.O, attention));
    NDArray residual = consume(o, h.add(o));

    NDArray n = rmsNorm(residual, w.get(postNorm), config.rmsNormEps());
    NDArray gate = project(w, linear, Projection.GATE, n);
    NDArray up = project(w, linear, Projection.UP, n);
    n.close();
    NDArray sigmoid = Activation.sigmoid(gate);
    NDArray silu = consume(sigmoid, gate.mul(sigmoid));
    gate.close();
    NDArray act = consume(silu, silu.mul(up));
    up.close();
    NDArray down = consume(act, project(w, linear, Projection.DOWN, act));
    NDArray out = consume(down, residual.add(down));
    residual.close();
    return out;
  }

  /** {@code [batch, seq, heads * headDim]} projected to {@code [batch, heads, seq, headDim]}. */
  private static NDArray heads(NDArray projected, int batch, int seq, int heads, int headDim) {
    NDArray split = consume(projected, projected.reshape(batch, seq, heads, headDim));
    return consume(split, split.transpose(0, 2, 1, 3));
  }

  /** Closes {@code used} (now consumed) and returns {@code result}, which was computed from it. */
  private static NDArray consume(NDArray used, NDArray result) {
    used.close();
    return result;
  }

  private NDArray project(Weights w, LinearOp linear, Projection projection, NDArray input) {
    int p = projection.ordinal();
    return linear.apply(
        modules[p], input, w.get(weights[p]), biases[p] == null ? null : w.get(biases[p]));
  }

  /** RMSNorm (Zhang and Sennrich, arXiv 1910.07467): {@code x * rsqrt(mean(x^2) + eps) * w}. */
  public static NDArray rmsNorm(NDArray x, NDArray weight, double eps) {
    NDArray square = x.square();
    NDArray mean = consume(square, square.mean(new int[] {-1}, true));
    NDArray shifted = consume(mean, mean.add((float) eps));
    NDArray rms = consume(shifted, shifted.sqrt());
    NDArray normed = consume(rms, x.div(rms));
    return consume(normed, normed.mul(weight));
  }

  /** {@code x * cos + rotate_half(x) * sin}, rotate_half(x) = cat(-x[d/2:], x[:d/2]). */
  private NDArray applyRope(NDArray x, NDArray cos, NDArray sin) {
    NDArray second = x.get(secondHalf);
    NDArray negated = consume(second, second.neg());
    NDArray first = x.get(firstHalf);
    NDArray rotated = NDArrays.concat(new NDList(negated, first), -1);
    negated.close();
    first.close();
    NDArray turned = consume(rotated, rotated.mul(sin));
    NDArray scaled = consume(x, x.mul(cos));
    NDArray out = consume(scaled, scaled.add(turned));
    turned.close();
    return out;
  }

  /**
   * RoPE cos and sin tables {@code [seq, head_dim]} for positions {@code past .. past+seq-1}, in
   * {@code scope}.
   */
  public static NDArray[] ropeTables(NDManager scope, LlamaConfig config, int past, int seq) {
    return ropeTables(scope, new RotaryEmbedding(config), config, past, seq);
  }

  static NDArray[] ropeTables(
      NDManager scope, RotaryEmbedding rope, LlamaConfig config, int past, int seq) {
    float[][] tables = rope.tables(past, seq);
    return new NDArray[] {
      scope.create(tables[0], new Shape(seq, config.headDim())),
      scope.create(tables[1], new Shape(seq, config.headDim()))
    };
  }

  /**
   * Additive mask {@code [seq, past+seq]}: 0 where query {@code past+i} may see key {@code j}
   * ({@code j <= past+i}, and within the sliding window if any), -inf elsewhere; {@code null} when
   * everything is visible (one new token, no window).
   */
  public static NDArray causalMask(NDManager scope, LlamaConfig config, int past, int seq) {
    int total = past + seq;
    Integer window = config.slidingWindow();
    if (seq == 1 && (window == null || total <= window)) {
      return null;
    }
    float[] mask = new float[Math.multiplyExact(seq, total)];
    for (int i = 0; i < seq; i++) {
      int position = past + i;
      for (int j = 0; j < total; j++) {
        boolean visible = j <= position && (window == null || position - j < window);
        mask[i * total + j] = visible ? 0f : Float.NEGATIVE_INFINITY;
      }
    }
    return scope.create(mask, new Shape(seq, total));
  }

  private static NDArray own(NDManager scope, NDArray array) {
    array.attach(scope);
    return array;
  }
}
