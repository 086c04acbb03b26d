package io.distillery.model.stream;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDList;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import ai.djl.nn.core.Linear;
import io.distillery.model.CorruptCheckpointException;
import io.distillery.model.config.LlamaConfig;
import io.distillery.model.config.LlamaTensorNames;
import io.distillery.model.llama.DecoderLayer;
import io.distillery.model.quant.CompressedTensors;
import io.distillery.model.quant.QuantizedWeight;
import io.distillery.model.quant.StaticActivationQuantization;
import io.distillery.model.safetensors.Checkpoint;
import io.distillery.model.safetensors.TensorCodec;
import io.distillery.model.safetensors.TensorInfo;
import io.distillery.model.tasks.TaskBatch;
import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.SequencedMap;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Teacher-forced answer scores of a model too big to hold in memory, in one streamed forward pass
 * (see /work/shared/SCALE.md, "Exact match without generation"): the batches' hidden states {@code
 * [rows, seq, hidden]} stay in memory while the decoder layers are read from the memory-mapped
 * checkpoint one at a time (widened to F32 in Java; a compressed-tensors layer's linears are
 * dequantized for that layer only, and W8A8 inputs are fake-quantized as {@link
 * StaticActivationQuantization} does for the whole model), run and freed. Then the final norm is
 * applied to the scored positions only, and the LM head (the embedding when tied) is read in chunks
 * of vocabulary rows; a running max, log-sum-exp and argmax per position over the chunks give log
 * p(target) and the greedy token without the full logits row or the whole {@code [vocab, hidden]}
 * head ever being in F32.
 *
 * <p>Greedy decoding returns exactly the expected answer when, teacher-forced on {@code <s> prompt
 * answer </s>}, the argmax at every answer position and at the stop is the expected token;
 * perplexity is exp(mean -log p) over the same positions, as {@link TaskBatch#mask()} marks them.
 * Given the reference's {@link Reference} from its own pass, the same chunk loop also accumulates
 * KL(P_ref || P_model) per position (the reference's head is re-read beside the model's; its layers
 * are not re-run).
 */
public final class TeacherForcedScorer {

  /**
   * Vocabulary rows of the LM head widened at a time (8192 x 4096 x 4 B = 128 MiB for an 8B Llama).
   */
  public static final int DEFAULT_HEAD_ROWS = 8192;

  private static final Logger LOG = LoggerFactory.getLogger(TeacherForcedScorer.class);

  /**
   * Scores of every scored position (a one in a batch's mask), in batch, row, position order.
   *
   * @param logProb log p(target) under the model
   * @param argmax the model's greedy token there
   * @param target the expected token
   * @param sequence the row, numbered across batches (batch 0's rows first)
   * @param sequences rows in all batches
   * @param seconds wall time of the pass
   * @param klFromReference KL(P_reference || P_model) in nats at each scored position, or null when
   *     no reference was given
   * @param asReference what a later candidate's pass needs to compute its KL against this model
   */
  public record Result(
      double[] logProb,
      int[] argmax,
      int[] target,
      int[] sequence,
      int sequences,
      double seconds,
      double[] klFromReference,
      Reference asReference) {

    /** Scores without KL. */
    public Result(
        double[] logProb,
        int[] argmax,
        int[] target,
        int[] sequence,
        int sequences,
        double seconds) {
      this(logProb, argmax, target, sequence, sequences, seconds, null, null);
    }

    /**
     * Per row: whether every scored position's argmax is its target (greedy decoding returns the
     * answer).
     */
    public boolean[] exact() {
      boolean[] exact = new boolean[sequences];
      Arrays.fill(exact, true);
      for (int i = 0; i < argmax.length; i++) {
        if (argmax[i] != target[i]) {
          exact[sequence[i]] = false;
        }
      }
      return exact;
    }
  }

  /**
   * A scored model as the reference of a later pass: its LM head's input at the scored positions
   * ({@code [scored, hidden]}, after the final norm and any input quantization) and the log-sum-exp
   * of its logits there. A candidate's pass re-reads the reference's head chunk by chunk beside its
   * own, so that KL(P_ref || P_cand) = sum_v p_ref(v) (log p_ref(v) - z_cand(v)) +
   * logsumexp(z_cand) is accumulated in the same chunk loop, without either model's full
   * distribution or the reference's layers.
   */
  public record Reference(Path model, LlamaConfig config, float[] headInput, double[] logSumExp) {}

  /** Progress: {@code done} of {@code total} steps (decoder layers, then the head's chunks). */
  @FunctionalInterface
  public interface Progress {
    void report(int done, int total, String step);
  }

  /**
   * Receives the LM head's logits a chunk of vocabulary rows at a time, during the pass: {@code
   * logits[i * rows + v]} is the logit of id {@code from + v} at scored position {@code i} (batch,
   * row, position order, as {@link Result}); chunks come in ascending {@code from}. Lets a caller
   * keep what it needs of each full distribution (e.g. the top k) without the whole row.
   */
  @FunctionalInterface
  public interface HeadChunks {
    void accept(int from, int rows, float[] logits);
  }

  private final Path model;
  private final LlamaConfig config;
  private final int headRows;

  public TeacherForcedScorer(Path model, LlamaConfig config, int headRows) {
    if (headRows < 1) {
      throw new IllegalArgumentException("headRows must be at least 1, got " + headRows);
    }
    this.model = model;
    this.config = config;
    this.headRows = headRows;
  }

  /**
   * Peak memory of {@link #score}: the streamed forward's (one layer, the batches' hidden states,
   * one batch's workspace; {@link MemoryPlan}) plus the head's chunk in Java and DJL, its logits
   * for the scored positions, and the normed scored hidden states, for the model and (KL) the
   * reference.
   */
  public static long peakBytes(LlamaConfig config, List<TaskBatch> batches, int headRows) {
    long tokens = 0;
    long batchTokens = 0;
    int rows = 0;
    int seq = 0;
    long scored = 0;
    for (TaskBatch b : batches) {
      long t = (long) b.size() * b.length();
      tokens += t;
      batchTokens = Math.max(batchTokens, t);
      rows = Math.max(rows, b.size());
      seq = Math.max(seq, b.length());
      scored += b.answerTokens();
    }
    long forward = MemoryPlan.estimate(config, tokens, batchTokens, rows, seq, false).peakBytes();
    long chunk = Math.min(headRows, config.vocabSize());
    long head =
        2 * chunk * config.hiddenSize() * 4
            + 2 * scored * chunk * 4
            + 2 * scored * config.hiddenSize() * 4;
    // twice: a KL pass reads the reference's head chunk and holds its logits beside the model's own
    return forward + 2 * head;
  }

  /**
   * Runs {@code batches} (from {@link TaskBatch#of}; packed batches are not supported) through the
   * model and scores their masked positions.
   *
   * @throws CorruptCheckpointException if a tensor is missing, not floating point (and not a
   *     quantized module), or its shape disagrees with config.json
   */
  public Result score(List<TaskBatch> batches, Progress progress)
      throws IOException, InterruptedException {
    return score(batches, null, progress);
  }

  /**
   * {@link #score(List, Progress)} plus KL(P_reference || P_model) at each scored position.
   *
   * @param reference {@link Result#asReference()} of the reference's pass over the same batches, or
   *     null
   */
  public Result score(List<TaskBatch> batches, Reference reference, Progress progress)
      throws IOException, InterruptedException {
    return score(batches, reference, null, progress);
  }

  /**
   * {@link #score(List, Reference, Progress)}, handing every chunk of the LM head's logits to
   * {@code chunks} (null for none).
   */
  public Result score(
      List<TaskBatch> batches, Reference reference, HeadChunks headChunks, Progress progress)
      throws IOException, InterruptedException {
    if (batches.isEmpty()) {
      throw new IllegalArgumentException("nothing to score: no batches");
    }
    if (reference != null && reference.config().vocabSize() != config.vocabSize()) {
      throw new IllegalArgumentException(
          "the reference has vocab_size "
              + reference.config().vocabSize()
              + " but the model has "
              + config.vocabSize());
    }
    for (TaskBatch b : batches) {
      if (b.segments() != null) {
        throw new IllegalArgumentException(
            "packed batches cannot be scored streamed; use TaskBatch.of");
      }
    }
    long start = System.nanoTime();
    int layers = config.numHiddenLayers();
    int chunks = (config.vocabSize() + headRows - 1) / headRows;
    int total = layers + chunks;
    boolean compressed = CompressedTensors.isCompressed(model);
    StaticActivationQuantization activations =
        compressed ? CompressedTensors.activationQuantization(model) : null;
    DecoderLayer.LinearOp linear =
        (module, input, w, b) -> {
          NDArray x = activations == null ? input : activations.apply(module, input);
          NDList out = b == null ? Linear.linear(x, w) : Linear.linear(x, w, b);
          return out.singletonOrThrow();
        };
    SequencedMap<String, long[]> shapes = LlamaTensorNames.shapes(config);
    try (Checkpoint checkpoint = Checkpoint.open(model);
        NDManager base = Engine.getEngine("PyTorch").newBaseManager()) {
      base.setName("teacher-forced-scorer");
      NDManager states = base.newSubManager();
      try {
        List<NDArray> hidden = embed(states, checkpoint, batches);
        for (int layer = 0; layer < layers; layer++) {
          if (Thread.interrupted()) {
            throw new InterruptedException(
                "streamed scoring interrupted before layer " + layer + "/" + layers);
          }
          progress.report(layer, total, "layer " + (layer + 1) + "/" + layers);
          DecoderLayer decoder = new DecoderLayer(config, layer);
          NDManager next = base.newSubManager();
          List<NDArray> outputs = new ArrayList<>(hidden.size());
          try (NDManager layerManager = base.newSubManager()) {
            Map<String, NDArray> params = layerArrays(layerManager, checkpoint, shapes, layer);
            DecoderLayer.Weights weights =
                name -> {
                  NDArray a = params.get(name);
                  if (a == null) {
                    throw new IllegalStateException(
                        "no tensor " + name + " in layer " + decoder.index());
                  }
                  return a;
                };
            for (int i = 0; i < hidden.size(); i++) {
              TaskBatch b = batches.get(i);
              try (NDManager step = base.newSubManager()) {
                NDArray h = hidden.get(i);
                h.tempAttach(step);
                NDArray[] rope = DecoderLayer.ropeTables(step, config, 0, b.length());
                NDArray mask = DecoderLayer.causalMask(step, config, 0, b.length());
                NDArray out =
                    decoder.forward(
                        step,
                        weights,
                        linear,
                        h,
                        b.size(),
                        b.length(),
                        rope[0],
                        rope[1],
                        mask,
                        null);
                out.attach(next);
                outputs.add(out);
              }
            }
          } catch (IOException | RuntimeException e) {
            next.close();
            throw e;
          }
          states.close();
          states = next;
          hidden = outputs;
        }
        float[] normed = scoredHidden(checkpoint, batches, hidden);
        states.close();
        states = base.newSubManager();
        return head(
            base,
            checkpoint,
            batches,
            normed,
            activations,
            reference,
            headChunks,
            progress,
            layers,
            total,
            start);
      } finally {
        states.close();
      }
    }
  }

  /**
   * One decoder layer's tensors as F32 arrays: dense ones widened, quantized linears dequantized.
   */
  private Map<String, NDArray> layerArrays(
      NDManager manager, Checkpoint checkpoint, SequencedMap<String, long[]> shapes, int layer)
      throws IOException {
    String prefix = LlamaTensorNames.layerPrefix(layer);
    Map<String, NDArray> arrays = new LinkedHashMap<>();
    for (Map.Entry<String, long[]> e : shapes.entrySet()) {
      if (e.getKey().startsWith(prefix)) {
        arrays.put(
            e.getKey(),
            manager.create(floats(checkpoint, e.getKey(), e.getValue()), new Shape(e.getValue())));
      }
    }
    return arrays;
  }

  /**
   * A tensor widened to F32: a quantized module's weight dequantized, a dense tensor decoded;
   * shapes checked.
   */
  private float[] floats(Checkpoint checkpoint, String name, long[] shape) throws IOException {
    if (name.endsWith(".weight") && !checkpoint.contains(name)
        || checkpoint.contains(name) && !checkpoint.info(name).dtype().isFloatingPoint()) {
      String module = name.substring(0, name.length() - ".weight".length());
      QuantizedWeight q =
          name.endsWith(".weight") ? CompressedTensors.readModule(checkpoint, model, module) : null;
      if (q == null) {
        if (!checkpoint.contains(name)) {
          throw new CorruptCheckpointException(model, "tensor '" + name + "' is missing");
        }
        throw new CorruptCheckpointException(
            model,
            "tensor '"
                + name
                + "' is "
                + checkpoint.info(name).dtype()
                + " without a weight_scale; expected a float tensor");
      }
      if (q.rows() != shape[0] || q.cols() != shape[1]) {
        throw new CorruptCheckpointException(
            model,
            "quantized module '"
                + module
                + "' is "
                + q.rows()
                + "x"
                + q.cols()
                + " but config.json implies "
                + Arrays.toString(shape));
      }
      return q.dequantize();
    }
    TensorInfo info = checkpoint.info(name);
    if (!Arrays.equals(info.shape(), shape)) {
      throw new CorruptCheckpointException(
          model,
          "tensor '"
              + name
              + "' has shape "
              + Arrays.toString(info.shape())
              + " but config.json implies "
              + Arrays.toString(shape));
    }
    return checkpoint.floats(name);
  }

  /**
   * The embedding rows of the batches' tokens, widened in Java: the table itself is never widened
   * whole.
   */
  private List<NDArray> embed(NDManager manager, Checkpoint checkpoint, List<TaskBatch> batches)
      throws IOException {
    int hidden = config.hiddenSize();
    TensorInfo info = checkpoint.info(LlamaTensorNames.EMBED_TOKENS);
    long[] expected = {config.vocabSize(), hidden};
    if (!Arrays.equals(info.shape(), expected) || !info.dtype().isFloatingPoint()) {
      throw new CorruptCheckpointException(
          model,
          "tensor '"
              + LlamaTensorNames.EMBED_TOKENS
              + "' is "
              + info.dtype()
              + " "
              + Arrays.toString(info.shape())
              + " but config.json implies a float "
              + Arrays.toString(expected));
    }
    MemorySegment table = checkpoint.segment(LlamaTensorNames.EMBED_TOKENS);
    long rowBytes = (long) hidden * info.dtype().byteSize();
    List<NDArray> out = new ArrayList<>();
    for (TaskBatch b : batches) {
      float[] h = new float[Math.multiplyExact(b.size() * b.length(), hidden)];
      int at = 0;
      for (int[] row : b.inputs()) {
        for (int id : row) {
          if (id < 0 || id >= config.vocabSize()) {
            throw new IllegalArgumentException(
                "token id " + id + " is outside the vocabulary [0, " + config.vocabSize() + ")");
          }
          System.arraycopy(
              TensorCodec.decodeFloats(table.asSlice(id * rowBytes, rowBytes), info.dtype()),
              0,
              h,
              at,
              hidden);
          at += hidden;
        }
      }
      out.add(manager.create(h, new Shape(b.size(), b.length(), hidden)));
    }
    return out;
  }

  /**
   * The final RMSNorm of the scored positions' hidden states, {@code [scored, hidden]} row-major.
   */
  private float[] scoredHidden(Checkpoint checkpoint, List<TaskBatch> batches, List<NDArray> hidden)
      throws IOException {
    int width = config.hiddenSize();
    float[] norm = floats(checkpoint, LlamaTensorNames.FINAL_NORM, new long[] {width});
    int scored = batches.stream().mapToInt(TaskBatch::answerTokens).sum();
    float[] gathered = new float[Math.multiplyExact(scored, width)];
    int at = 0;
    for (int i = 0; i < batches.size(); i++) {
      float[] mask = batches.get(i).mask();
      float[] h = hidden.get(i).toFloatArray();
      for (int p = 0; p < mask.length; p++) {
        if (mask[p] > 0) {
          System.arraycopy(h, p * width, gathered, at * width, width);
          at++;
        }
      }
    }
    try (NDManager scope = hidden.getFirst().getManager().newSubManager()) {
      NDArray x = scope.create(gathered, new Shape(scored, width));
      return DecoderLayer.rmsNorm(x, scope.create(norm), config.rmsNormEps()).toFloatArray();
    }
  }

  /**
   * The LM head over the scored positions in chunks of vocabulary rows, with a running max /
   * log-sum-exp / argmax.
   */
  private Result head(
      NDManager base,
      Checkpoint checkpoint,
      List<TaskBatch> batches,
      float[] normed,
      StaticActivationQuantization activations,
      Reference reference,
      HeadChunks chunks,
      Progress progress,
      int layers,
      int total,
      long start)
      throws IOException, InterruptedException {
    int width = config.hiddenSize();
    int vocab = config.vocabSize();
    int scored = normed.length / width;
    int[] target = new int[scored];
    int[] sequence = new int[scored];
    int at = 0;
    int row0 = 0;
    for (TaskBatch b : batches) {
      float[] mask = b.mask();
      long[] targets = b.targets();
      for (int p = 0; p < mask.length; p++) {
        if (mask[p] > 0) {
          target[at] = Math.toIntExact(targets[p]);
          sequence[at] = row0 + p / b.length();
          at++;
        }
      }
      row0 += b.size();
    }
    if (reference != null && reference.logSumExp().length != scored) {
      throw new IllegalArgumentException(
          "the reference was scored on "
              + reference.logSumExp().length
              + " positions, this pass has "
              + scored);
    }
    double[] max = new double[scored];
    double[] sum = new double[scored];
    double[] targetLogit = new double[scored];
    double[] klPart = reference == null ? null : new double[scored];
    int[] argmax = new int[scored];
    Arrays.fill(max, Double.NEGATIVE_INFINITY);
    float[] headInput;
    try (NDManager scope = base.newSubManager();
        Checkpoint referenceCheckpoint =
            reference == null ? null : Checkpoint.open(reference.model())) {
      HeadRows own = new HeadRows(checkpoint, model, config);
      HeadRows ref =
          reference == null
              ? null
              : new HeadRows(referenceCheckpoint, reference.model(), reference.config());
      NDArray x = scope.create(normed, new Shape(scored, width));
      if (activations != null) {
        x = activations.apply(LlamaTensorNames.LM_HEAD_MODULE, x);
      }
      headInput = x.toFloatArray();
      NDArray refX =
          reference == null
              ? null
              : scope.create(
                  reference.headInput(), new Shape(scored, reference.config().hiddenSize()));
      for (int from = 0, chunk = 0; from < vocab; from += headRows, chunk++) {
        if (Thread.interrupted()) {
          throw new InterruptedException("streamed scoring interrupted in the LM head");
        }
        progress.report(layers + chunk, total, "lm head rows " + from + "/" + vocab);
        int rows = Math.min(headRows, vocab - from);
        float[] logits = own.logits(scope, x, from, rows);
        float[] refLogits = ref == null ? null : ref.logits(scope, refX, from, rows);
        if (chunks != null) {
          chunks.accept(from, rows, logits);
        }
        for (int i = 0; i < scored; i++) {
          int offset = i * rows;
          double m = max[i];
          int best = argmax[i];
          for (int v = 0; v < rows; v++) {
            if (logits[offset + v] > m) {
              m = logits[offset + v];
              best = from + v;
            }
          }
          double s = sum[i] == 0 ? 0 : sum[i] * Math.exp(max[i] - m);
          for (int v = 0; v < rows; v++) {
            s += Math.exp(logits[offset + v] - m);
          }
          sum[i] = s;
          max[i] = m;
          argmax[i] = best;
          if (target[i] >= from && target[i] < from + rows) {
            targetLogit[i] = logits[offset + target[i] - from];
          }
          if (refLogits != null) {
            double lse = reference.logSumExp()[i];
            double k = 0;
            for (int v = 0; v < rows; v++) {
              double lr = refLogits[offset + v] - lse;
              k += Math.exp(lr) * (lr - logits[offset + v]);
            }
            klPart[i] += k;
          }
        }
      }
    }
    double[] logProb = new double[scored];
    double[] logSumExp = new double[scored];
    double[] kl = reference == null ? null : new double[scored];
    for (int i = 0; i < scored; i++) {
      logSumExp[i] = max[i] + Math.log(sum[i]);
      logProb[i] = targetLogit[i] - logSumExp[i];
      if (kl != null) {
        kl[i] = Math.max(0, klPart[i] + logSumExp[i]);
      }
    }
    double seconds = (System.nanoTime() - start) / 1e9;
    progress.report(total, total, "scored");
    LOG.info(
        "streamed teacher-forced scoring model={} layers={} sequences={} scoredPositions={} headChunks={} "
            + "klAgainst={} seconds={}",
        model,
        layers,
        row0,
        scored,
        (vocab + headRows - 1) / headRows,
        reference == null ? null : reference.model(),
        seconds);
    return new Result(
        logProb,
        argmax,
        target,
        sequence,
        row0,
        seconds,
        kl,
        new Reference(model, config, headInput, logSumExp));
  }

  /** Rows of one model's LM head (the embedding when tied), widened in Java a chunk at a time. */
  private static final class HeadRows {
    private final Checkpoint checkpoint;
    private final String name;
    private final int width;
    private final float[] dequantized;

    HeadRows(Checkpoint checkpoint, Path dir, LlamaConfig config) throws IOException {
      this.checkpoint = checkpoint;
      this.name =
          config.tieWordEmbeddings() ? LlamaTensorNames.EMBED_TOKENS : LlamaTensorNames.LM_HEAD;
      this.width = config.hiddenSize();
      long[] shape = {config.vocabSize(), width};
      if (!checkpoint.contains(name) || !checkpoint.info(name).dtype().isFloatingPoint()) {
        // a quantized lm_head (rare: quantizers keep it dense) is dequantized whole
        QuantizedWeight q =
            CompressedTensors.readModule(checkpoint, dir, LlamaTensorNames.LM_HEAD_MODULE);
        if (q == null || q.rows() != shape[0] || q.cols() != shape[1]) {
          throw new CorruptCheckpointException(
              dir,
              "tensor '"
                  + name
                  + "' is missing or not a float "
                  + Arrays.toString(shape)
                  + " tensor");
        }
        dequantized = q.dequantize();
      } else if (!Arrays.equals(checkpoint.info(name).shape(), shape)) {
        throw new CorruptCheckpointException(
            dir,
            "tensor '"
                + name
                + "' has shape "
                + Arrays.toString(checkpoint.info(name).shape())
                + " but config.json implies "
                + Arrays.toString(shape));
      } else {
        dequantized = null;
      }
    }

    /**
     * {@code x [n, width]} times rows {@code [from, from + rows)} transposed: {@code [n, rows]}
     * row-major.
     */
    float[] logits(NDManager scope, NDArray x, int from, int rows) throws IOException {
      float[] w;
      if (dequantized != null) {
        w = Arrays.copyOfRange(dequantized, from * width, (from + rows) * width);
      } else {
        TensorInfo info = checkpoint.info(name);
        long rowBytes = (long) width * info.dtype().byteSize();
        w =
            TensorCodec.decodeFloats(
                checkpoint.segment(name).asSlice(from * rowBytes, rows * rowBytes), info.dtype());
      }
      try (NDManager step = scope.newSubManager()) {
        NDArray weight = step.create(w, new Shape(rows, width));
        return Linear.linear(x, weight).singletonOrThrow().toFloatArray();
      }
    }
  }
}
