package io.distillery.model.stream;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDList;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import ai.djl.nn.core.Linear;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.distillery.model.CorruptCheckpointException;
import io.distillery.model.config.LlamaConfig;
import io.distillery.model.config.LlamaTensorNames;
import io.distillery.model.config.Projection;
import io.distillery.model.llama.DecoderLayer;
import io.distillery.model.safetensors.Checkpoint;
import io.distillery.model.safetensors.DType;
import io.distillery.model.safetensors.SafetensorsFile;
import io.distillery.model.safetensors.SafetensorsWriter;
import io.distillery.model.safetensors.ShardedCheckpointWriter;
import io.distillery.model.safetensors.TensorCodec;
import io.distillery.model.safetensors.TensorData;
import io.distillery.model.safetensors.TensorInfo;
import io.distillery.model.safetensors.TensorSource;
import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.nio.charset.StandardCharsets;
import java.nio.file.AtomicMoveNotSupportedException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.SequencedMap;
import java.util.stream.Stream;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The layer-streaming executor: runs a stage over a Llama checkpoint one decoder layer at a time,
 * so that a model far larger than memory is compressed in about one layer's worth of it (see
 * /work/shared/SCALE.md).
 *
 * <p>For each layer, in order: its tensors are read from the memory-mapped (sharded) checkpoint and
 * widened to F32 in Java (DJL aborts on BF16; when nothing runs forward, as for round-to-nearest,
 * only the tensors the visitor asks for, see {@link LayerWeights#stored}); the calibration batch's
 * hidden states pass through it while the {@link LayerVisitor} observes its linear inputs; the
 * visitor rewrites it; with {@code sequential} (the GPTQ and SparseGPT reference code's and
 * llm-compressor's sequential pipeline's schedule) the layer is re-run with the rewritten weights
 * so that layer i+1 is calibrated on the outputs of the compressed layer i, else the original
 * layer's outputs go on (one-pass statistics, as a whole-model calibration gets); the layer's
 * output tensors are written at once and the layer is freed. The embedding is never widened whole:
 * only the rows of the tokens used are gathered. Dense tensors keep their input dtype (BF16 in,
 * BF16 out, narrowed in Java with round-to-nearest-even); embedding, final norm and LM head are
 * copied through as stored.
 *
 * <p>Resume: each finished layer's tensors go to {@code workDir/layer-NNNNN.safetensors} and the
 * hidden states after it to {@code workDir/hidden.safetensors}, then {@code workDir/state.json}
 * records the count; a run with the same fingerprint continues from there. The output is assembled
 * from those files at the end ({@link ShardedCheckpointWriter#writeAll}: every shard straight into
 * its final file), and the work files are deleted.
 */
public final class LayerStreamer {

  private static final Logger LOG = LoggerFactory.getLogger(LayerStreamer.class);
  private static final ObjectMapper JSON = new ObjectMapper();
  private static final String STATE_FILE = "state.json";
  private static final String HIDDEN_FILE = "hidden.safetensors";

  /**
   * @param sequential re-run each rewritten layer to produce the next layer's inputs
   * @param maxShardBytes output shard size (5 GB by default, as transformers)
   */
  public record Options(boolean sequential, long maxShardBytes) {

    public static Options defaults() {
      return new Options(true, ShardedCheckpointWriter.DEFAULT_MAX_SHARD_BYTES);
    }

    public Options withSequential(boolean value) {
      return new Options(value, maxShardBytes);
    }

    public Options withMaxShardBytes(long value) {
      return new Options(sequential, value);
    }
  }

  /**
   * Progress inside the run: {@code layer} (0-based) of {@code layers}, a sub-step and the fraction
   * of the run done.
   */
  @FunctionalInterface
  public interface Progress {
    void report(int layer, int layers, String step, double fractionDone);
  }

  /**
   * @param layers decoder layers in the model
   * @param resumedFrom layers found finished in the work directory when the run started
   * @param forwardFlops floating-point operations of the calibration forward passes (2 x MACs)
   * @param forwardSeconds wall time spent in them (including what the visitor does with the
   *     observed inputs)
   * @param files the output weight files (index last when sharded)
   * @param denseDtype the stored dtype of the input's decoder-layer weights, kept for dense outputs
   */
  public record Result(
      int layers,
      int resumedFrom,
      double forwardFlops,
      double forwardSeconds,
      List<Path> files,
      DType denseDtype) {}

  private final Path model;
  private final LlamaConfig config;
  private final Options options;

  public LayerStreamer(Path model, LlamaConfig config, Options options) {
    this.model = model;
    this.config = config;
    this.options = options;
  }

  /**
   * Runs {@code visitor} over every decoder layer and writes the output weights into {@code
   * output}.
   *
   * @param batches calibration token ids, each batch {@code [rows][seq]} of equal-length rows;
   *     empty when nothing is observed (round-to-nearest needs no data)
   * @param output the output model directory, or null for a stage that only observes (nothing is
   *     written, and a killed run starts over)
   * @param workDir survives a killed attempt; holds the finished layers
   * @param fingerprint identifies the job (params, inputs): finished layers of another fingerprint
   *     are discarded
   * @throws CorruptCheckpointException if a tensor is missing, not floating point, or its shape
   *     disagrees with config.json
   */
  public Result run(
      List<int[][]> batches,
      LayerVisitor visitor,
      Path output,
      Path workDir,
      String fingerprint,
      Progress progress)
      throws IOException, InterruptedException {
    int layers = config.numHiddenLayers();
    Files.createDirectories(workDir);
    try (Checkpoint checkpoint = Checkpoint.open(model)) {
      SequencedMap<String, long[]> shapes = LlamaTensorNames.shapes(config);
      LlamaTensorNames.validate(checkpoint, config); // names and shapes, from the headers
      DType dense = validate(checkpoint, shapes);
      int done = resumePoint(workDir, fingerprint, layers);
      boolean forward = !batches.isEmpty() && (visitor.observes() || options.sequential());
      double flops = 0;
      long forwardNanos = 0;
      long loadNanos = 0;
      long rewriteNanos = 0;
      long writeNanos = 0;
      // the engine (libtorch, seconds to load) only for a forward pass: round-to-nearest has none
      try (NDManager base = forward ? Engine.getEngine("PyTorch").newBaseManager() : null) {
        NDManager states = null;
        if (base != null) {
          base.setName("layer-streamer");
          states = base.newSubManager();
        }
        List<NDArray> hidden = null;
        if (forward) {
          hidden =
              done == 0 ? embed(states, checkpoint, batches) : loadHidden(states, workDir, batches);
        }
        for (int layer = done; layer < layers; layer++) {
          if (Thread.interrupted()) {
            throw new InterruptedException(
                "layer streaming interrupted before layer "
                    + layer
                    + "/"
                    + layers
                    + "; "
                    + layer
                    + " layers are finished in "
                    + workDir);
          }
          int current = layer;
          LayerVisitor.StepListener step =
              (what, fraction) ->
                  progress.report(
                      current,
                      layers,
                      what,
                      (current + Math.min(1, Math.max(0, fraction))) / layers);
          step.step("load", 0);
          long loadStart = System.nanoTime();
          DecoderLayer decoder = new DecoderLayer(config, layer);
          SequencedMap<String, float[]> values = new LinkedHashMap<>();
          SequencedMap<String, TensorData> stored = new LinkedHashMap<>();
          Map<String, long[]> layerShapes = new LinkedHashMap<>();
          String prefix = LlamaTensorNames.layerPrefix(layer);
          for (Map.Entry<String, long[]> e : shapes.entrySet()) {
            if (e.getKey().startsWith(prefix)) {
              if (forward) {
                values.put(e.getKey(), checkpoint.floats(e.getKey()));
              } else { // nothing runs forward: the visitor widens what it asks for
                stored.put(
                    e.getKey(),
                    new TensorData(
                        checkpoint.info(e.getKey()).dtype(),
                        e.getValue(),
                        checkpoint.segment(e.getKey())));
              }
              layerShapes.put(e.getKey(), e.getValue());
            }
          }
          boolean reruns = forward && (options.sequential() || !visitor.observes());
          LayerWeights weights =
              forward
                  ? new LayerWeights(layer, values, layerShapes, reruns)
                  : LayerWeights.lazy(layer, stored, layerShapes, reruns);
          loadNanos += System.nanoTime() - loadStart;
          NDManager next = base == null ? null : base.newSubManager();
          try (NDManager layerManager = base == null ? null : base.newSubManager()) {
            List<NDArray> outputs = null;
            if (forward && visitor.observes()) {
              step.step("observe", 0.02);
              long t0 = System.nanoTime();
              Map<String, NDArray> params = arrays(layerManager, values, layerShapes);
              DecoderLayer.LinearOp observe =
                  (module, input, w, b) -> {
                    visitor.observe(current, module, input);
                    return linear(input, w, b);
                  };
              outputs = pass(decoder, params, observe, hidden, batches, next, visitor, current);
              forwardNanos += System.nanoTime() - t0;
              flops += forwardFlops(batches);
              params.values().forEach(NDArray::close);
            }
            step.step("rewrite", 0.05);
            long rewriteStart = System.nanoTime();
            visitor.rewrite(weights, step);
            rewriteNanos += System.nanoTime() - rewriteStart;
            if (forward && (options.sequential() || outputs == null)) {
              if (outputs != null) {
                outputs.forEach(NDArray::close);
              }
              step.step("re-run", 0.97);
              long t0 = System.nanoTime();
              Map<String, NDArray> params = arrays(layerManager, values, layerShapes);
              outputs =
                  pass(
                      decoder,
                      params,
                      (module, input, w, b) ->
                          linear(visitor.rerunInput(current, module, input), w, b),
                      hidden,
                      batches,
                      next,
                      null,
                      current);
              forwardNanos += System.nanoTime() - t0;
              flops += forwardFlops(batches);
            }
            if (output != null) {
              long writeStart = System.nanoTime();
              writeLayer(workDir, weights, layerShapes, checkpoint, dense);
              writeNanos += System.nanoTime() - writeStart;
            }
            if (forward) {
              states.close();
              states = next;
              hidden = outputs;
              saveHidden(workDir, hidden);
            } else if (next != null) {
              next.close();
            }
            saveState(workDir, fingerprint, layer + 1);
            step.step("done", 1);
          } catch (IOException | RuntimeException | InterruptedException e) {
            if (next != null && states != next) {
              next.close();
            }
            throw e;
          }
        }
        if (states != null) {
          states.close();
        }
      }
      long assembleStart = System.nanoTime();
      List<Path> files = output == null ? List.of() : assemble(checkpoint, shapes, workDir, output);
      long assembleNanos = System.nanoTime() - assembleStart;
      clean(workDir);
      LOG.info(
          "streamed layers={} resumedFrom={} sequential={} forwardGflop={} output={} seconds:"
              + " load={} forward={} rewrite={} writeLayers={} assemble={}",
          layers,
          done,
          options.sequential(),
          String.format(Locale.ROOT, "%.1f", flops / 1e9),
          output,
          String.format(Locale.ROOT, "%.2f", loadNanos / 1e9),
          String.format(Locale.ROOT, "%.2f", forwardNanos / 1e9),
          String.format(Locale.ROOT, "%.2f", rewriteNanos / 1e9),
          String.format(Locale.ROOT, "%.2f", writeNanos / 1e9),
          String.format(Locale.ROOT, "%.2f", assembleNanos / 1e9));
      return new Result(layers, done, flops, forwardNanos / 1e9, files, dense);
    }
  }

  /**
   * Checks that every tensor config.json implies is floating point (names and shapes are {@link
   * LlamaTensorNames#validate}'s); returns the stored dtype of the decoder-layer weights.
   */
  static DType validate(Checkpoint checkpoint, SequencedMap<String, long[]> shapes)
      throws CorruptCheckpointException {
    DType dense = null;
    for (Map.Entry<String, long[]> expected : shapes.entrySet()) {
      String name = expected.getKey();
      TensorInfo info = checkpoint.info(name);
      if (!info.dtype().isFloatingPoint()) {
        throw new CorruptCheckpointException(
            checkpoint.directory(),
            "tensor '"
                + name
                + "' is "
                + info.dtype()
                + "; only F32, F16 and BF16 checkpoints can be streamed");
      }
      if (dense == null && name.startsWith("model.layers.")) {
        dense = info.dtype();
      }
    }
    return dense == null ? DType.F32 : dense;
  }

  private static NDArray linear(NDArray input, NDArray weight, NDArray bias) {
    NDList result =
        bias == null ? Linear.linear(input, weight) : Linear.linear(input, weight, bias);
    return result.singletonOrThrow();
  }

  private static Map<String, NDArray> arrays(
      NDManager manager, Map<String, float[]> values, Map<String, long[]> shapes) {
    Map<String, NDArray> arrays = new LinkedHashMap<>();
    values.forEach((name, v) -> arrays.put(name, manager.create(v, new Shape(shapes.get(name)))));
    return arrays;
  }

  /**
   * Runs every batch's hidden states through the layer; the outputs are attached to {@code next}.
   */
  private List<NDArray> pass(
      DecoderLayer decoder,
      Map<String, NDArray> params,
      DecoderLayer.LinearOp linear,
      List<NDArray> hidden,
      List<int[][]> batches,
      NDManager next,
      LayerVisitor visitor,
      int layer)
      throws InterruptedException {
    List<NDArray> outputs = new ArrayList<>(hidden.size());
    DecoderLayer.Weights weights =
        name -> {
          NDArray a = params.get(name);
          if (a == null) {
            throw new IllegalStateException("no tensor " + name + " in layer " + layer);
          }
          return a;
        };
    for (int b = 0; b < hidden.size(); b++) {
      if (Thread.currentThread().isInterrupted()) {
        throw new InterruptedException("layer streaming interrupted in layer " + layer);
      }
      int rows = batches.get(b).length;
      int seq = batches.get(b)[0].length;
      NDArray h = hidden.get(b);
      try (NDManager step = next.getParentManager().newSubManager()) {
        h.tempAttach(step);
        NDArray[] rope = DecoderLayer.ropeTables(step, config, 0, seq);
        NDArray mask = DecoderLayer.causalMask(step, config, 0, seq);
        NDArray out =
            decoder.forward(step, weights, linear, h, rows, seq, rope[0], rope[1], mask, null);
        out.attach(next);
        outputs.add(out);
      }
      if (visitor != null) {
        visitor.endOfBatch(layer);
      }
    }
    return outputs;
  }

  /**
   * Forward FLOPs of one layer over all batches: 2 x linear MACs plus QK^T and AV (4 x seq x
   * attention width).
   */
  private double forwardFlops(List<int[][]> batches) {
    double linear = 0;
    for (Projection p : Projection.values()) {
      linear += (double) p.inFeatures(config) * p.outFeatures(config);
    }
    double flops = 0;
    for (int[][] batch : batches) {
      long tokens = (long) batch.length * batch[0].length;
      flops += tokens * (2 * linear + 4.0 * batch[0].length * config.attentionWidth());
    }
    return flops;
  }

  /**
   * The embedding rows of the batches' tokens, widened in Java: the table itself is never widened
   * whole.
   */
  private List<NDArray> embed(NDManager manager, Checkpoint checkpoint, List<int[][]> batches)
      throws IOException {
    TensorInfo info = checkpoint.info(LlamaTensorNames.EMBED_TOKENS);
    MemorySegment table = checkpoint.segment(LlamaTensorNames.EMBED_TOKENS);
    int hidden = config.hiddenSize();
    long rowBytes = (long) hidden * info.dtype().byteSize();
    List<NDArray> out = new ArrayList<>();
    for (int[][] batch : batches) {
      int seq = batch[0].length;
      float[] h = new float[Math.multiplyExact(batch.length * seq, hidden)];
      int at = 0;
      for (int[] row : batch) {
        if (row.length != seq) {
          throw new IllegalArgumentException(
              "a batch's rows must have equal lengths, got " + row.length + " and " + seq);
        }
        for (int id : row) {
          if (id < 0 || id >= config.vocabSize()) {
            throw new IllegalArgumentException(
                "token id " + id + " is outside the vocabulary [0, " + config.vocabSize() + ")");
          }
          float[] v =
              TensorCodec.decodeFloats(table.asSlice(id * rowBytes, rowBytes), info.dtype());
          System.arraycopy(v, 0, h, at, hidden);
          at += hidden;
        }
      }
      out.add(manager.create(h, new Shape(batch.length, seq, hidden)));
    }
    return out;
  }

  private void writeLayer(
      Path workDir,
      LayerWeights weights,
      Map<String, long[]> shapes,
      Checkpoint checkpoint,
      DType dense)
      throws IOException {
    Map<String, TensorSource> tensors = new LinkedHashMap<>();
    for (String name : weights.names()) {
      String module =
          name.endsWith(".weight") ? name.substring(0, name.length() - ".weight".length()) : null;
      SequencedMap<String, TensorSource> emitted = module == null ? null : weights.emitted(module);
      if (emitted != null) {
        tensors.putAll(emitted); // its dense values are not needed (nor widened, if never read)
      } else {
        tensors.put(
            name,
            TensorData.ofFloats(
                checkpoint.info(name).dtype(), shapes.get(name), weights.get(name)));
      }
    }
    // not synced: it is copied into the output (which is) and deleted within the run, usually
    // before the kernel writes it back at all; resume checks it is whole (intact)
    SafetensorsWriter.write(
        layerFile(workDir, weights.layer()), tensors, Map.of("format", "pt"), false);
  }

  private static Path layerFile(Path workDir, int layer) {
    return workDir.resolve(String.format(Locale.ROOT, "layer-%05d.safetensors", layer));
  }

  private static void saveHidden(Path workDir, List<NDArray> hidden) throws IOException {
    Map<String, TensorSource> tensors = new LinkedHashMap<>();
    for (int b = 0; b < hidden.size(); b++) {
      NDArray h = hidden.get(b);
      tensors.put(
          String.format(Locale.ROOT, "batch.%05d", b),
          TensorSource.lazy(
              DType.F32, h.getShape().getShape(), () -> MemorySegment.ofBuffer(h.toByteBuffer())));
    }
    SafetensorsWriter.write(workDir.resolve(HIDDEN_FILE), tensors, Map.of());
  }

  private List<NDArray> loadHidden(NDManager manager, Path workDir, List<int[][]> batches)
      throws IOException {
    List<NDArray> out = new ArrayList<>();
    try (SafetensorsFile file = SafetensorsFile.open(workDir.resolve(HIDDEN_FILE))) {
      for (int b = 0; b < batches.size(); b++) {
        String name = String.format(Locale.ROOT, "batch.%05d", b);
        long[] shape = {batches.get(b).length, batches.get(b)[0].length, config.hiddenSize()};
        if (!file.contains(name) || !Arrays.equals(file.info(name).shape(), shape)) {
          throw new IOException(
              "the saved hidden states in " + workDir + " do not match the calibration batches");
        }
        out.add(manager.create(file.floats(name), new Shape(shape)));
      }
    }
    return out;
  }

  /**
   * Finished layers recorded for {@code fingerprint}; 0 (and the work files cleared) for another or
   * none.
   */
  static int resumePoint(Path workDir, String fingerprint, int layers) throws IOException {
    Path state = workDir.resolve(STATE_FILE);
    if (Files.isRegularFile(state)) {
      JsonNode node = JSON.readTree(state.toFile());
      int done = node.path("layers_done").asInt(-1);
      boolean complete = done >= 0 && done <= layers;
      for (int i = 0; i < done && complete; i++) {
        complete = intact(layerFile(workDir, i));
      }
      if (fingerprint.equals(node.path("fingerprint").asText()) && complete) {
        LOG.info("resuming layer streaming workDir={} layersDone={}", workDir, done);
        return done;
      }
    }
    clean(workDir);
    return 0;
  }

  /**
   * Whether a finished layer's work file opens with a valid header whose data fills the file: the
   * work files are not synced to the device (see {@link #writeLayer}), so one cut short by a crash
   * of the machine is found here and the run starts over instead of resuming from it.
   */
  private static boolean intact(Path layerFile) {
    if (!Files.isRegularFile(layerFile)) {
      return false;
    }
    try (SafetensorsFile file = SafetensorsFile.open(layerFile)) {
      return !file.tensors().isEmpty();
    } catch (IOException | RuntimeException e) {
      LOG.warn("layer work file {} is unreadable, redoing it: {}", layerFile, e.getMessage());
      return false;
    }
  }

  private static void saveState(Path workDir, String fingerprint, int done) throws IOException {
    ObjectNode node =
        JSON.createObjectNode().put("fingerprint", fingerprint).put("layers_done", done);
    Path temp = workDir.resolve("." + STATE_FILE + ".partial");
    Files.writeString(temp, node.toString() + "\n", StandardCharsets.UTF_8);
    try {
      Files.move(
          temp,
          workDir.resolve(STATE_FILE),
          StandardCopyOption.REPLACE_EXISTING,
          StandardCopyOption.ATOMIC_MOVE);
    } catch (AtomicMoveNotSupportedException e) {
      Files.move(temp, workDir.resolve(STATE_FILE), StandardCopyOption.REPLACE_EXISTING);
    }
  }

  private static void clean(Path workDir) throws IOException {
    try (Stream<Path> files = Files.list(workDir)) {
      for (Path f : files.toList()) {
        String name = f.getFileName().toString();
        if (name.startsWith("layer-") || name.equals(HIDDEN_FILE) || name.equals(STATE_FILE)) {
          Files.deleteIfExists(f);
        }
      }
    }
  }

  /**
   * Embedding, the finished layers and the final norm / LM head, in checkpoint order, through the
   * sharded writer.
   */
  private List<Path> assemble(
      Checkpoint checkpoint, SequencedMap<String, long[]> shapes, Path workDir, Path output)
      throws IOException {
    List<SafetensorsFile> parts = new ArrayList<>();
    try {
      SequencedMap<String, TensorSource> tensors = new LinkedHashMap<>();
      copy(tensors, checkpoint, LlamaTensorNames.EMBED_TOKENS);
      for (int layer = 0; layer < config.numHiddenLayers(); layer++) {
        SafetensorsFile part = SafetensorsFile.open(layerFile(workDir, layer));
        parts.add(part);
        for (TensorInfo info : part.tensors()) {
          tensors.put(
              info.name(),
              TensorSource.lazy(info.dtype(), info.shape(), () -> part.segment(info.name())));
        }
      }
      copy(tensors, checkpoint, LlamaTensorNames.FINAL_NORM);
      if (shapes.containsKey(LlamaTensorNames.LM_HEAD)) {
        copy(tensors, checkpoint, LlamaTensorNames.LM_HEAD);
      }
      // every size is known now: each shard is written once, header first, from the mappings
      return ShardedCheckpointWriter.writeAll(
          output, options.maxShardBytes(), Map.of("format", "pt"), tensors);
    } finally {
      parts.forEach(SafetensorsFile::close);
    }
  }

  /** A tensor as stored in the mapped input, copied through when the output is written. */
  private static void copy(Map<String, TensorSource> tensors, Checkpoint checkpoint, String name)
      throws CorruptCheckpointException {
    TensorInfo info = checkpoint.info(name);
    tensors.put(
        name, TensorSource.lazy(info.dtype(), info.shape(), () -> checkpoint.segment(name)));
  }
}
