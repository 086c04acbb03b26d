package io.distillery.model.llama;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDList;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.index.NDIndex;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import ai.djl.ndarray.types.SparseFormat;
import ai.djl.nn.core.Embedding;
import ai.djl.nn.core.Linear;
import io.distillery.model.CorruptCheckpointException;
import io.distillery.model.config.LlamaConfig;
import io.distillery.model.config.LlamaTensorNames;
import io.distillery.model.safetensors.Checkpoint;
import io.distillery.model.safetensors.DType;
import io.distillery.model.safetensors.SafetensorsWriter;
import io.distillery.model.safetensors.TensorCodec;
import io.distillery.model.safetensors.TensorInfo;
import io.distillery.model.safetensors.TensorSource;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.SequencedMap;
import java.util.SplittableRandom;
import java.util.concurrent.CopyOnWriteArrayList;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * A Llama-family decoder (Llama, Mistral, Qwen2) as DJL NDArrays in transformers' parameter layout.
 * One forward pass, {@code [batch, seq]} token ids to {@code [batch, seq, vocab]} logits:
 *
 * <pre>
 * h = embed(ids)
 * per layer:  h += o_proj(attention(rope(q_proj(n)), rope(k_proj(n)), v_proj(n)))   n = rmsnorm(h)
 *             h += down_proj(silu(gate_proj(n)) * up_proj(n))                         n = rmsnorm(h)
 * logits = lm_head(rmsnorm(h))          (lm_head = embed when tie_word_embeddings)
 * </pre>
 *
 * RMSNorm (Zhang and Sennrich, arXiv 1910.07467): {@code x * rsqrt(mean(x^2) + eps) * w}. Attention
 * is causal, grouped-query (Ainslie et al., arXiv 2305.13245: query head h reads key/value head
 * {@code h / (heads / kv_heads)}), scaled by {@code 1/sqrt(head_dim)}, optionally windowed
 * (Mistral). SwiGLU after Shazeer, arXiv 2002.05202.
 *
 * <p>Owns its parameters in one NDManager (closed by {@link #close()}). Each forward pass runs in a
 * sub-manager of the input's manager, closed before returning, so repeated calls do not grow
 * memory; the logits are attached to the input's manager. Works under a DJL {@code
 * GradientCollector} after {@link #setTrainable(boolean)}. Forward passes may run concurrently;
 * mutating the model (replacing weights, training steps) must not overlap them.
 */
public final class LlamaModel implements AutoCloseable {

  private static final Logger LOG = LoggerFactory.getLogger(LlamaModel.class);
  private static final String ENGINE = "PyTorch";
  private static final float INITIALIZER_RANGE = 0.02f;

  private final LlamaConfig config;
  private final NDManager manager;
  private final SequencedMap<String, NDArray> parameters;
  private final RotaryEmbedding rope;
  private final DecoderLayer[] decoderLayers;
  private final NDIndex lastPosition = new NDIndex(":, -1:, :");
  private final List<LinearInputObserver> observers = new CopyOnWriteArrayList<>();
  private final List<LinearInputTransform> transforms = new CopyOnWriteArrayList<>();
  private volatile boolean trainable;

  private LlamaModel(
      LlamaConfig config, NDManager manager, SequencedMap<String, NDArray> parameters) {
    this.config = config;
    this.manager = manager;
    this.parameters = parameters;
    this.rope = new RotaryEmbedding(config);
    this.decoderLayers = new DecoderLayer[config.numHiddenLayers()];
    for (int i = 0; i < decoderLayers.length; i++) {
      decoderLayers[i] = new DecoderLayer(config, i);
    }
  }

  // ---------------------------------------------------------------- construction

  /**
   * Loads {@code config.json} and the safetensors weights of a model directory, in a new manager.
   */
  public static LlamaModel load(Path modelDirectory) throws IOException {
    return load(modelDirectory, null);
  }

  /**
   * Loads a model directory; the model's manager is a sub-manager of {@code parent} (a new base
   * manager of the PyTorch engine when {@code null}).
   */
  public static LlamaModel load(Path modelDirectory, NDManager parent) throws IOException {
    LlamaConfig config = LlamaConfig.read(modelDirectory.resolve(LlamaConfig.FILE_NAME));
    try (Checkpoint checkpoint = Checkpoint.open(modelDirectory)) {
      return fromCheckpoint(config, checkpoint, parent);
    }
  }

  /**
   * Builds the model from an open checkpoint, widening F16/BF16 to F32 in Java. Tensors the layout
   * does not use (e.g. old {@code rotary_emb.inv_freq} buffers, or {@code lm_head.weight} of a tied
   * model) are ignored.
   *
   * @throws CorruptCheckpointException if a tensor is missing, has the wrong shape or is not
   *     floating point
   */
  public static LlamaModel fromCheckpoint(
      LlamaConfig config, Checkpoint checkpoint, NDManager parent) throws IOException {
    LlamaTensorNames.validate(
        checkpoint, config); // every name and shape, from the headers, before any weight
    NDManager manager = newManager(parent);
    try {
      SequencedMap<String, NDArray> params = new LinkedHashMap<>();
      for (Map.Entry<String, long[]> expected : LlamaTensorNames.shapes(config).entrySet()) {
        String name = expected.getKey();
        TensorInfo info = checkpoint.info(name);
        if (!info.dtype().isFloatingPoint()) {
          throw new CorruptCheckpointException(
              checkpoint.directory(),
              "tensor '"
                  + name
                  + "' is "
                  + info.dtype()
                  + "; only F32, F16 and BF16 weights can be loaded into the forward pass");
        }
        params.put(name, manager.create(checkpoint.floats(name), new Shape(expected.getValue())));
      }
      int ignored = checkpoint.tensorNames().size() - params.size();
      if (ignored > 0) {
        LOG.debug(
            "ignored checkpoint tensors directory={} count={}", checkpoint.directory(), ignored);
      }
      return new LlamaModel(config, manager, params);
    } catch (IOException | RuntimeException e) {
      manager.close();
      throw e;
    }
  }

  /**
   * Random weights as transformers initialises them, in a new manager; see {@link
   * #random(LlamaConfig, long, NDManager)}.
   */
  public static LlamaModel random(LlamaConfig config, long seed) {
    return random(config, seed, null);
  }

  /**
   * Random weights as transformers initialises Llama: linear and embedding weights from N(0,
   * 0.02^2), biases 0, norm weights 1. The same seed gives the same weights.
   */
  public static LlamaModel random(LlamaConfig config, long seed, NDManager parent) {
    NDManager manager = newManager(parent);
    try {
      SplittableRandom random = new SplittableRandom(seed);
      SequencedMap<String, NDArray> params = new LinkedHashMap<>();
      for (Map.Entry<String, long[]> entry : LlamaTensorNames.shapes(config).entrySet()) {
        String name = entry.getKey();
        long[] shape = entry.getValue();
        float[] values = new float[Math.toIntExact(new Shape(shape).size())];
        if (name.endsWith("norm.weight")) {
          Arrays.fill(values, 1f);
        } else if (!name.endsWith(".bias")) {
          for (int i = 0; i < values.length; i++) {
            values[i] = (float) random.nextGaussian() * INITIALIZER_RANGE;
          }
        }
        params.put(name, manager.create(values, new Shape(shape)));
      }
      return new LlamaModel(config, manager, params);
    } catch (RuntimeException e) {
      manager.close();
      throw e;
    }
  }

  private static NDManager newManager(NDManager parent) {
    NDManager manager =
        parent == null ? Engine.getEngine(ENGINE).newBaseManager() : parent.newSubManager();
    manager.setName("llama-model");
    return manager;
  }

  public LlamaConfig config() {
    return config;
  }

  /** The manager owning the parameters. */
  public NDManager manager() {
    return manager;
  }

  // ---------------------------------------------------------------- forward

  /**
   * Logits for every position, {@code [batch, seq, vocab]} float32, attached to {@code tokenIds}'
   * manager.
   *
   * @param tokenIds {@code [batch, seq]} integer token ids (int32 or int64), all in {@code [0,
   *     vocab_size)}
   */
  public NDArray forward(NDArray tokenIds) {
    return run(tokenIds, null, false, null);
  }

  /**
   * Logits for the new positions, attending to everything in {@code cache} first and appending
   * these positions to it.
   */
  public NDArray forward(NDArray tokenIds, KvCache cache) {
    return run(tokenIds, Objects.requireNonNull(cache, "cache"), false, null);
  }

  /**
   * Convenience: {@code [batch][seq]} ids (rows of equal length) to logits attached to {@code out}.
   */
  public NDArray forward(NDManager out, int[][] tokenIds) {
    try (NDArray ids = createIds(out, tokenIds)) {
      return run(ids, null, false, null);
    }
  }

  /**
   * Logits of rows that pack several sequences end to end: position {@code i} attends to {@code j
   * <= i} only when {@code segments[b][i] == segments[b][j]}, so each sequence sees only itself.
   * RoPE makes attention depend only on the distance between positions, so a packed sequence gets
   * the logits it would get alone at the start of a row (up to float rounding), without the padding
   * a batch of unequal lengths needs.
   *
   * @param segments {@code [batch][seq]}, the same shape as {@code tokenIds}; any int labels a
   *     sequence
   */
  public NDArray forward(NDManager out, int[][] tokenIds, int[][] segments) {
    try (NDArray ids = createIds(out, tokenIds)) {
      return run(ids, null, false, Objects.requireNonNull(segments, "segments"));
    }
  }

  /** Convenience with a cache. */
  public NDArray forward(NDManager out, int[][] tokenIds, KvCache cache) {
    try (NDArray ids = createIds(out, tokenIds)) {
      return run(ids, Objects.requireNonNull(cache, "cache"), false, null);
    }
  }

  /** An empty KV cache for this model; close it when done. */
  public KvCache newKvCache() {
    NDManager cacheManager = manager.newSubManager();
    cacheManager.setName("llama-kv-cache");
    return new KvCache(this, cacheManager, config.numHiddenLayers());
  }

  private NDArray createIds(NDManager out, int[][] tokenIds) {
    if (tokenIds.length == 0 || tokenIds[0].length == 0) {
      throw new IllegalArgumentException("token ids must be a non-empty [batch][seq] array");
    }
    int seq = tokenIds[0].length;
    long[] flat = new long[Math.multiplyExact(tokenIds.length, seq)];
    for (int b = 0; b < tokenIds.length; b++) {
      if (tokenIds[b].length != seq) {
        throw new IllegalArgumentException(
            "row "
                + b
                + " has "
                + tokenIds[b].length
                + " tokens, row 0 has "
                + seq
                + "; pad rows to equal length");
      }
      for (int s = 0; s < seq; s++) {
        flat[b * seq + s] = tokenIds[b][s];
      }
    }
    return out.create(flat, new Shape(tokenIds.length, seq));
  }

  /**
   * One forward of several sequences that share {@code cache} row by row ({@link
   * BatchedGeneration}): row {@code b} feeds {@code tokens[b]} (rows of equal length {@code seq}; a
   * row's first tokens may be padding) at positions {@code positions[b], positions[b]+1, ...}, and
   * sees the columns from {@code starts[b]} on, up to its own (the columns before belong to other
   * sequences or to padding). A padding position (a column before {@code starts[b]}) sees only
   * itself, so that it stays finite; nothing reads it. Logits {@code [rows, seq, vocab]} attached
   * to {@code out}.
   */
  NDArray forwardRows(NDManager out, int[][] tokens, int[] positions, int[] starts, KvCache cache) {
    try (NDArray input = createIds(out, tokens)) {
      return run(
          input,
          Objects.requireNonNull(cache, "cache"),
          false,
          null,
          (scope, past) -> rowTables(scope, positions, starts, past, tokens[0].length));
    }
  }

  /**
   * RoPE tables {@code [rows, 1, seq, head_dim]} at each row's own positions (padding at 0), and
   * the additive mask {@code [rows, 1, seq, past+seq]} that hides each row's padding, the future
   * and, with a sliding window, columns out of it; the mask is null when every column is visible.
   */
  private NDArray[] rowTables(NDManager scope, int[] positions, int[] starts, int past, int seq) {
    int rows = positions.length;
    int headDim = config.headDim();
    int block = seq * headDim;
    float[] cos = new float[rows * block];
    float[] sin = new float[rows * block];
    int total = past + seq;
    Integer window = config.slidingWindow();
    float[] mask = new float[rows * seq * total];
    boolean masked = false;
    for (int b = 0; b < rows; b++) {
      int padding = Math.max(0, -positions[b]);
      int real = Math.max(0, seq - padding);
      if (real > 0) {
        float[][] t = rope.tables(positions[b] + padding, real);
        System.arraycopy(t[0], 0, cos, b * block + padding * headDim, real * headDim);
        System.arraycopy(t[1], 0, sin, b * block + padding * headDim, real * headDim);
      }
      if (padding > 0) {
        float[][] t = rope.tables(0, 1);
        for (int i = 0; i < Math.min(padding, seq); i++) {
          System.arraycopy(t[0], 0, cos, b * block + i * headDim, headDim);
          System.arraycopy(t[1], 0, sin, b * block + i * headDim, headDim);
        }
      }
      for (int i = 0; i < seq; i++) {
        int column = past + i;
        int row = (b * seq + i) * total;
        for (int j = 0; j < total; j++) {
          boolean visible =
              column < starts[b]
                  ? j == column
                  : j >= starts[b] && j <= column && (window == null || column - j < window);
          if (!visible) {
            mask[row + j] = Float.NEGATIVE_INFINITY;
            masked = true;
          }
        }
      }
    }
    return new NDArray[] {
      scope.create(cos, new Shape(rows, 1, seq, headDim)),
      scope.create(sin, new Shape(rows, 1, seq, headDim)),
      masked ? scope.create(mask, new Shape(rows, 1, seq, total)) : null
    };
  }

  /** Position tables and mask of a forward pass, made in its scope: {cos, sin, mask or null}. */
  @FunctionalInterface
  private interface PositionTables {
    NDArray[] make(NDManager scope, int past);
  }

  private NDArray run(NDArray tokenIds, KvCache cache, boolean lastPositionOnly, int[][] segments) {
    return run(tokenIds, cache, lastPositionOnly, segments, null);
  }

  private NDArray run(
      NDArray tokenIds,
      KvCache cache,
      boolean lastPositionOnly,
      int[][] segments,
      PositionTables positions) {
    Shape shape = tokenIds.getShape();
    if (shape.dimension() != 2 || shape.get(0) == 0 || shape.get(1) == 0) {
      throw new IllegalArgumentException(
          "token ids must be [batch, seq] with batch, seq > 0, got " + shape);
    }
    DataType type = tokenIds.getDataType();
    if (type != DataType.INT64 && type != DataType.INT32) {
      throw new IllegalArgumentException("token ids must be int32 or int64, got " + type);
    }
    int batch = Math.toIntExact(shape.get(0));
    int seq = Math.toIntExact(shape.get(1));
    checkTokenRange(tokenIds);
    if (cache != null) {
      cache.begin(this, batch);
    }
    int past = cache == null ? 0 : cache.length();
    NDManager out = tokenIds.getManager();
    try (NDManager scope = out.newSubManager()) {
      NDArray[] tables =
          positions != null
              ? positions.make(scope, past)
              : DecoderLayer.ropeTables(scope, rope, config, past, seq);
      NDArray cos = tables[0];
      NDArray sin = tables[1];
      NDArray mask =
          positions != null
              ? tables[2]
              : segments == null
                  ? causalMask(scope, past, seq)
                  : segmentMask(scope, segments, batch, seq);
      NDArray h =
          own(
              scope,
              Embedding.embedding(
                      tokenIds, param(LlamaTensorNames.EMBED_TOKENS), SparseFormat.DENSE)
                  .singletonOrThrow());
      for (int i = 0; i < decoderLayers.length; i++) {
        // each layer's input is freed once the next is computed (autograd keeps what it needs)
        NDArray next = decoderLayer(scope, i, h, batch, seq, cos, sin, mask, cache);
        h.close();
        h = next;
      }
      h = rmsNorm(h, param(LlamaTensorNames.FINAL_NORM));
      if (lastPositionOnly) {
        h = h.get(lastPosition);
      }
      NDArray head =
          param(
              config.tieWordEmbeddings()
                  ? LlamaTensorNames.EMBED_TOKENS
                  : LlamaTensorNames.LM_HEAD);
      NDArray logits = linear(LlamaTensorNames.LM_HEAD_MODULE, h, head, null);
      logits.attach(out);
      if (cache != null) {
        cache.commit(seq);
      }
      return logits;
    } catch (RuntimeException e) {
      if (cache != null) {
        cache.markBroken();
      }
      throw e;
    }
  }

  private NDArray decoderLayer(
      NDManager scope,
      int index,
      NDArray h,
      int batch,
      int seq,
      NDArray cos,
      NDArray sin,
      NDArray mask,
      KvCache cache) {
    return decoderLayers[index].forward(
        scope, this::param, this::linear, h, batch, seq, cos, sin, mask, cache);
  }

  /**
   * Additive mask {@code [seq, past+seq]}: 0 where query {@code past+i} may see key {@code j}
   * ({@code j <= past+i}, and within the sliding window if any), -inf elsewhere; {@code null} when
   * everything is visible (one new token, no window).
   */
  private NDArray causalMask(NDManager scope, int past, int seq) {
    return DecoderLayer.causalMask(scope, config, past, seq);
  }

  /**
   * Additive mask {@code [batch, 1, seq, seq]}: 0 where query {@code i} may see key {@code j}
   * ({@code j <= i}, in the same segment, and within the sliding window if any), -inf elsewhere.
   */
  private NDArray segmentMask(NDManager scope, int[][] segments, int batch, int seq) {
    if (segments.length != batch) {
      throw new IllegalArgumentException(
          "segments has " + segments.length + " rows, token ids " + batch);
    }
    Integer window = config.slidingWindow();
    float[] mask = new float[Math.multiplyExact(Math.multiplyExact(batch, seq), seq)];
    for (int b = 0; b < batch; b++) {
      if (segments[b].length != seq) {
        throw new IllegalArgumentException(
            "segments row " + b + " has " + segments[b].length + " labels for " + seq + " tokens");
      }
      for (int i = 0; i < seq; i++) {
        for (int j = 0; j < seq; j++) {
          boolean visible =
              j <= i && segments[b][i] == segments[b][j] && (window == null || i - j < window);
          mask[(b * seq + i) * seq + j] = visible ? 0f : Float.NEGATIVE_INFINITY;
        }
      }
    }
    return scope.create(mask, new Shape(batch, 1, seq, seq));
  }

  private NDArray rmsNorm(NDArray x, NDArray weight) {
    return DecoderLayer.rmsNorm(x, weight, config.rmsNormEps());
  }

  private NDArray linear(String module, NDArray input, NDArray weight, NDArray bias) {
    for (LinearInputObserver observer : observers) {
      observer.onLinearInput(module, input);
    }
    for (LinearInputTransform transform : transforms) {
      input = transform.apply(module, input);
    }
    NDList result =
        bias == null ? Linear.linear(input, weight) : Linear.linear(input, weight, bias);
    return result.singletonOrThrow();
  }

  private void checkTokenRange(NDArray tokenIds) {
    long[] ids =
        tokenIds.getDataType() == DataType.INT64
            ? tokenIds.toLongArray()
            : Arrays.stream(tokenIds.toIntArray()).asLongStream().toArray();
    for (long id : ids) {
      if (id < 0 || id >= config.vocabSize()) {
        throw new IllegalArgumentException(
            "token id " + id + " is outside the vocabulary [0, " + config.vocabSize() + ")");
      }
    }
  }

  private static NDArray own(NDManager scope, NDArray array) {
    array.attach(scope);
    return array;
  }

  private NDArray param(String name) {
    NDArray array = parameters.get(name);
    if (array == null) {
      throw new IllegalStateException("no parameter " + name);
    }
    return array;
  }

  // ---------------------------------------------------------------- generation

  /**
   * Generates up to {@code maxNewTokens} tokens after {@code prompt} with the KV cache.
   *
   * <p>Positions past {@code max_position_embeddings} are not refused: RoPE extrapolates, as in
   * transformers. Runs without gradient recording only if called outside a GradientCollector.
   *
   * @param stopTokenId generation stops after emitting this id (included in the result); negative
   *     for none
   * @return the new tokens only (not the prompt)
   */
  public int[] generate(int[] prompt, int maxNewTokens, SamplingParams params, int stopTokenId) {
    if (prompt.length == 0) {
      throw new IllegalArgumentException("prompt must not be empty");
    }
    if (maxNewTokens < 0) {
      throw new IllegalArgumentException("maxNewTokens must not be negative, got " + maxNewTokens);
    }
    TokenSampler sampler = new TokenSampler(Objects.requireNonNull(params, "params"));
    int[] generated = new int[maxNewTokens];
    int count = 0;
    if (maxNewTokens == 0) {
      return generated;
    }
    try (NDManager call = manager.newSubManager();
        KvCache cache = newKvCache()) {
      float[] logits = lastLogits(call, prompt, cache);
      while (true) {
        int next = sampler.next(logits);
        generated[count++] = next;
        if (next == stopTokenId || count == maxNewTokens) {
          break;
        }
        logits = lastLogits(call, new int[] {next}, cache);
      }
    }
    return Arrays.copyOf(generated, count);
  }

  /** Next-token logits after {@code tokens}, continuing {@code cache}. */
  private float[] lastLogits(NDManager call, int[] tokens, KvCache cache) {
    long[] ids = new long[tokens.length];
    for (int i = 0; i < tokens.length; i++) {
      ids[i] = tokens[i];
    }
    try (NDArray input = call.create(ids, new Shape(1, ids.length));
        NDArray logits = run(input, cache, true, null)) {
      return logits.toFloatArray();
    }
  }

  // ---------------------------------------------------------------- parameters and hooks

  /**
   * Every parameter by its transformers name, in {@code state_dict()} order (no {@code
   * lm_head.weight} when tied). A live, unmodifiable view: the arrays are the model's own.
   */
  public SequencedMap<String, NDArray> parameters() {
    return Collections.unmodifiableSequencedMap(parameters);
  }

  /** Turns gradient recording for every parameter on or off (for a DJL GradientCollector). */
  public void setTrainable(boolean trainable) {
    this.trainable = trainable;
    for (NDArray array : parameters.values()) {
      array.setRequiresGradient(trainable);
    }
  }

  public boolean isTrainable() {
    return trainable;
  }

  /** Zeroes accumulated gradients (PyTorch accumulates them across backward passes). */
  public void zeroGradients() {
    for (NDArray array : parameters.values()) {
      if (array.hasGradient()) {
        try (NDArray gradient = array.getGradient()) {
          // Assign, not subtract: x - x keeps a NaN or infinity from a bad step forever.
          gradient.set(new NDIndex("..."), 0f);
        }
      }
    }
  }

  /** Linear module names in forward order: per layer q, k, v, o, gate, up, down; then lm_head. */
  public List<String> linearLayerNames() {
    return LlamaTensorNames.linearModules(config);
  }

  /** A copy of a linear layer's weight, {@code [out_features, in_features]} row-major. */
  public float[] linearWeight(String module) {
    return param(weightName(module)).toFloatArray();
  }

  /**
   * Replaces a linear layer's weight (e.g. by its quantized-dequantized or pruned version).
   *
   * @param weight {@code [out_features, in_features]} row-major
   * @throws IllegalArgumentException if the module is unknown, the size differs, or it is the LM
   *     head of a tied model (that would change the embeddings too)
   */
  public void replaceLinearWeight(String module, float[] weight) {
    String name = weightName(module);
    NDArray old = param(name);
    if (weight.length != old.size()) {
      throw new IllegalArgumentException(
          module
              + " weight has "
              + old.size()
              + " elements "
              + old.getShape()
              + ", got "
              + weight.length);
    }
    install(name, old, manager.create(weight, old.getShape()));
  }

  /**
   * Replaces a linear layer's weight with a copy of {@code weight}, which must have the same shape.
   */
  public void replaceLinearWeight(String module, NDArray weight) {
    String name = weightName(module);
    NDArray old = param(name);
    if (!weight.getShape().equals(old.getShape())) {
      throw new IllegalArgumentException(
          module + " weight has shape " + old.getShape() + ", got " + weight.getShape());
    }
    NDArray copy = weight.toType(DataType.FLOAT32, true);
    copy.attach(manager);
    install(name, old, copy);
  }

  private void install(String name, NDArray old, NDArray replacement) {
    if (trainable) {
      replacement.setRequiresGradient(true);
    }
    parameters.put(name, replacement);
    old.close();
  }

  private String weightName(String module) {
    if (module.equals(LlamaTensorNames.LM_HEAD_MODULE) && config.tieWordEmbeddings()) {
      throw new IllegalArgumentException(
          "lm_head is tied to the embeddings; its weight is " + LlamaTensorNames.EMBED_TOKENS);
    }
    String name = LlamaTensorNames.weight(module);
    if (!parameters.containsKey(name) || !linearLayerNames().contains(module)) {
      throw new IllegalArgumentException("no linear layer '" + module + "'");
    }
    return name;
  }

  /** Registers an observer of linear-layer inputs; close the registration to remove it. */
  public ObserverRegistration observeLinearInputs(LinearInputObserver observer) {
    Objects.requireNonNull(observer, "observer");
    observers.add(observer);
    return () -> observers.remove(observer);
  }

  /**
   * Registers a transform of linear-layer inputs (applied after the observers saw the input, in
   * registration order); close the registration to remove it.
   */
  public ObserverRegistration transformLinearInputs(LinearInputTransform transform) {
    Objects.requireNonNull(transform, "transform");
    transforms.add(transform);
    return () -> transforms.remove(transform);
  }

  /** Removes an observer when closed. */
  @FunctionalInterface
  public interface ObserverRegistration extends AutoCloseable {
    @Override
    void close();
  }

  // ---------------------------------------------------------------- saving

  /**
   * Writes {@code config.json} and {@code model.safetensors} (transformers names, metadata {@code
   * format=pt} as {@code from_pretrained} requires) into {@code directory}, streaming one tensor at
   * a time.
   *
   * @param dtype F32, F16 or BF16 (half types rounded to nearest even in Java); also written as
   *     {@code torch_dtype}
   */
  public void save(Path directory, DType dtype) throws IOException {
    if (!dtype.isFloatingPoint()) {
      throw new IllegalArgumentException("save writes F32, F16 or BF16, got " + dtype);
    }
    Files.createDirectories(directory);
    Map<String, TensorSource> tensors = new LinkedHashMap<>();
    for (Map.Entry<String, NDArray> entry : parameters.entrySet()) {
      NDArray array = entry.getValue();
      tensors.put(
          entry.getKey(),
          TensorSource.lazy(
              dtype,
              array.getShape().getShape(),
              () -> TensorCodec.encodeFloats(array.toFloatArray(), dtype)));
    }
    SafetensorsWriter.write(
        directory.resolve(Checkpoint.SINGLE_FILE), tensors, Map.of("format", "pt"));
    config.withTorchDtype(dtype.torchName()).write(directory);
  }

  /** Frees every parameter (and caches created by {@link #newKvCache()}). */
  @Override
  public void close() {
    manager.close();
  }
}
