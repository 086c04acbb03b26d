package io.distillery.pruner.structured;

import io.distillery.model.calib.CalibrationStats;
import io.distillery.model.calib.LayerStats;
import io.distillery.model.config.LlamaConfig;
import io.distillery.model.config.LlamaTensorNames;
import io.distillery.model.config.Projection;
import io.distillery.model.llama.LlamaModel;
import io.distillery.model.llama.WeightSlices;
import io.distillery.model.safetensors.Checkpoint;
import io.distillery.model.safetensors.DType;
import io.distillery.model.safetensors.SafetensorsWriter;
import io.distillery.model.safetensors.ShardedCheckpointWriter;
import io.distillery.model.safetensors.TensorData;
import io.distillery.model.safetensors.TensorInfo;
import io.distillery.model.safetensors.TensorSource;
import io.distillery.model.stream.LayerStreamer;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.SequencedMap;
import java.util.function.Function;
import java.util.stream.IntStream;

/**
 * Width and depth pruning in the spirit of Minitron (arXiv 2408.11796): rank attention heads (by
 * key/value group, so grouped-query attention stays consistent), MLP channels and whole decoder
 * layers by their importance on the calibration data, remove the least important, and write a
 * smaller dense checkpoint with a consistent config — the starting point for a distilled student.
 *
 * <p>Importance is the energy a unit adds to the residual stream, estimated from the calibration
 * statistics with the diagonal of the input covariance: for an input channel c of a projection W
 * that writes into the residual stream (o_proj, down_proj), {@code e_c = ||W[:, c]||^2 * sum_t
 * x_tc^2} (the calibration's {@code sumSq}), i.e. the squared L2 norm of that channel's output
 * contribution when channels are uncorrelated. A kv group's importance is the sum over the o_proj
 * input channels of its query heads; an MLP channel's is its down_proj term; a layer's is the sum
 * over all its o_proj and down_proj channels (the energy of the block's update to the residual
 * stream). Minitron ranks layers by the relative change of the hidden state (or the perplexity
 * without the layer); the residual stream itself is not in the calibration statistics (they observe
 * normalised layer inputs), so this uses the absolute size of the update as the honest proxy: a
 * block whose update is small changes the stream least when removed.
 */
public final class StructuredPruner {

  private StructuredPruner() {}

  /**
   * What to keep, as indices into the original model.
   *
   * @param layers kept decoder layers, ascending
   * @param kvGroups per kept layer (same order), the kept key/value groups, ascending
   * @param channels per kept layer, the kept MLP intermediate channels, ascending
   */
  public record Plan(int[] layers, int[][] kvGroups, int[][] channels) {}

  /** Callback after each layer is written. */
  @FunctionalInterface
  public interface LayerProgress {
    void done(int layersDone, int layersTotal);
  }

  /** Ranks heads, channels and layers and returns what to keep. */
  public static Plan plan(
      LlamaConfig config,
      CalibrationStats stats,
      Function<String, float[]> weights,
      double headFraction,
      double mlpFraction,
      int dropLayers) {
    int layers = config.numHiddenLayers();
    if (dropLayers >= layers) {
      throw new IllegalArgumentException(
          "dropLayers " + dropLayers + " would remove all " + layers + " layers");
    }
    int kv = config.numKeyValueHeads();
    int keepGroups = Math.max(1, kv - (int) Math.round(headFraction * kv));
    int inter = config.intermediateSize();
    int keepChannels = Math.max(1, inter - (int) Math.round(mlpFraction * inter));
    int groupWidth = config.numKeyValueGroups() * config.headDim();

    double[] layerEnergy = new double[layers];
    double[][] groupEnergy = new double[layers][];
    double[][] channelEnergy = new double[layers][];
    for (int l = 0; l < layers; l++) {
      double[] o =
          channelEnergy(
              config,
              stats,
              weights,
              Projection.O.module(l),
              config.hiddenSize(),
              config.attentionWidth());
      double[] down =
          channelEnergy(
              config, stats, weights, Projection.DOWN.module(l), config.hiddenSize(), inter);
      groupEnergy[l] = new double[kv];
      for (int c = 0; c < o.length; c++) {
        groupEnergy[l][c / groupWidth] += o[c];
      }
      channelEnergy[l] = down;
      layerEnergy[l] = Arrays.stream(o).sum() + Arrays.stream(down).sum();
    }
    int[] keptLayers = highest(layerEnergy, layers - dropLayers);
    int[][] groups = new int[keptLayers.length][];
    int[][] channels = new int[keptLayers.length][];
    for (int i = 0; i < keptLayers.length; i++) {
      groups[i] = highest(groupEnergy[keptLayers[i]], keepGroups);
      channels[i] = highest(channelEnergy[keptLayers[i]], keepChannels);
    }
    return new Plan(keptLayers, groups, channels);
  }

  /** The config of the pruned model. */
  public static LlamaConfig prunedConfig(LlamaConfig c, Plan plan) {
    int groups = plan.kvGroups()[0].length;
    return new LlamaConfig(
        c.architecture(),
        c.vocabSize(),
        c.hiddenSize(),
        plan.channels()[0].length,
        plan.layers().length,
        groups * c.numKeyValueGroups(),
        groups,
        c.headDim(),
        c.maxPositionEmbeddings(),
        c.rmsNormEps(),
        c.ropeTheta(),
        c.ropeScaling(),
        c.tieWordEmbeddings(),
        c.attentionBias(),
        c.slidingWindow(),
        c.bosTokenId(),
        c.eosTokenIds(),
        c.padTokenId(),
        "float32");
  }

  /**
   * Plans, slices and writes {@code config.json} and {@code model.safetensors} (F32) of the smaller
   * model into {@code out}.
   *
   * @return the pruned config
   */
  public static LlamaConfig prune(
      LlamaModel model,
      CalibrationStats stats,
      double headFraction,
      double mlpFraction,
      int dropLayers,
      Path out,
      LayerProgress progress)
      throws IOException {
    LlamaConfig config = model.config();
    Map<String, float[]> cache = new LinkedHashMap<>();
    Function<String, float[]> weights =
        module -> cache.computeIfAbsent(module, model::linearWeight);
    Plan plan = plan(config, stats, weights, headFraction, mlpFraction, dropLayers);
    cache.clear();
    LlamaConfig pruned = prunedConfig(config, plan);
    Map<String, TensorSource> tensors = new LinkedHashMap<>();
    for (Map.Entry<String, long[]> e : LlamaTensorNames.shapes(pruned).entrySet()) {
      String name = e.getKey();
      float[] values;
      if (!name.startsWith("model.layers.")) {
        values = model.parameters().get(name).toFloatArray();
      } else {
        int newLayer = Integer.parseInt(name.split("\\.")[2]);
        int oldLayer = plan.layers()[newLayer];
        String oldName =
            LlamaTensorNames.layerPrefix(oldLayer)
                + name.substring(LlamaTensorNames.layerPrefix(newLayer).length());
        float[] old = model.parameters().get(oldName).toFloatArray();
        values =
            slice(
                config,
                plan,
                newLayer,
                name.substring(LlamaTensorNames.layerPrefix(newLayer).length()),
                old);
      }
      checkSize(name, values, e.getValue());
      tensors.put(name, TensorData.ofFloats(DType.F32, e.getValue(), values));
      if (name.endsWith("post_attention_layernorm.weight") && progress != null) {
        progress.done(Integer.parseInt(name.split("\\.")[2]) + 1, pruned.numHiddenLayers());
      }
    }
    Files.createDirectories(out);
    SafetensorsWriter.write(out.resolve(Checkpoint.SINGLE_FILE), tensors, Map.of("format", "pt"));
    pruned.write(out);
    return pruned;
  }

  /**
   * One tensor of kept layer {@code newLayer} ({@code suffix}: its name after the layer prefix),
   * sliced from the original layer's values to the kept query/key/value heads and MLP channels.
   */
  static float[] slice(LlamaConfig config, Plan plan, int newLayer, String suffix, float[] old) {
    int[] groups = plan.kvGroups()[newLayer];
    int[] channels = plan.channels()[newLayer];
    int hd = config.headDim();
    int[] qRows = WeightSlices.expand(groups, config.numKeyValueGroups() * hd);
    int[] kvRows = WeightSlices.expand(groups, hd);
    int hidden = config.hiddenSize();
    return switch (suffix) {
      case "self_attn.q_proj.weight" -> WeightSlices.rows(old, hidden, qRows);
      case "self_attn.q_proj.bias" -> WeightSlices.rows(old, 1, qRows);
      case "self_attn.k_proj.weight", "self_attn.v_proj.weight" ->
          WeightSlices.rows(old, hidden, kvRows);
      case "self_attn.k_proj.bias", "self_attn.v_proj.bias" -> WeightSlices.rows(old, 1, kvRows);
      case "self_attn.o_proj.weight" ->
          WeightSlices.columns(old, hidden, config.attentionWidth(), qRows);
      case "mlp.gate_proj.weight", "mlp.up_proj.weight" -> WeightSlices.rows(old, hidden, channels);
      case "mlp.down_proj.weight" ->
          WeightSlices.columns(old, hidden, config.intermediateSize(), channels);
      default -> old; // norms, o_proj bias
    };
  }

  private static void checkSize(String name, float[] values, long[] shape) {
    if (values.length != shapeSize(shape)) {
      throw new IllegalStateException(
          name + ": sliced " + values.length + " values for shape " + Arrays.toString(shape));
    }
  }

  /**
   * @param config the pruned model's config (its torch_dtype the input's)
   * @param files the written weight files (index last when sharded)
   */
  public record Streamed(LlamaConfig config, List<Path> files) {}

  /**
   * {@link #prune} without holding the model: the plan reads one o_proj / down_proj weight at a
   * time from the memory-mapped checkpoint, then each kept layer is read, sliced and written at
   * once through a {@link ShardedCheckpointWriter} in its stored dtype (embedding, final norm and
   * LM head copied as stored). Peak memory: about one decoder layer in F32, twice.
   */
  public static Streamed pruneStreamed(
      Path model,
      LlamaConfig config,
      CalibrationStats stats,
      double headFraction,
      double mlpFraction,
      int dropLayers,
      Path out,
      LayerStreamer.Progress progress)
      throws IOException, InterruptedException {
    try (Checkpoint checkpoint = Checkpoint.open(model)) {
      LlamaTensorNames.validate(checkpoint, config);
      int layers = config.numHiddenLayers();
      String[] lastLayer = {""};
      Function<String, float[]> weights =
          module -> {
            try {
              String prefix = module.substring(0, module.indexOf('.', "model.layers.".length()));
              if (!prefix.equals(lastLayer[0])) {
                lastLayer[0] = prefix;
                int layer = Integer.parseInt(prefix.substring("model.layers.".length()));
                progress.report(layer, layers, "importance", 0.2 * layer / layers);
              }
              return checkpoint.floats(LlamaTensorNames.weight(module));
            } catch (IOException e) {
              throw new UncheckedIOException(e);
            }
          };
      Plan plan;
      try {
        plan = plan(config, stats, weights, headFraction, mlpFraction, dropLayers);
      } catch (UncheckedIOException e) {
        throw e.getCause();
      }
      DType dense =
          checkpoint.info(LlamaTensorNames.layerPrefix(0) + "input_layernorm.weight").dtype();
      LlamaConfig pruned = prunedConfig(config, plan).withTorchDtype(dense.torchName());
      SequencedMap<String, long[]> shapes = LlamaTensorNames.shapes(pruned);
      List<Path> files;
      try (ShardedCheckpointWriter writer =
          new ShardedCheckpointWriter(
              out, ShardedCheckpointWriter.DEFAULT_MAX_SHARD_BYTES, Map.of("format", "pt"))) {
        copy(writer, checkpoint, LlamaTensorNames.EMBED_TOKENS);
        for (int layer = 0; layer < pruned.numHiddenLayers(); layer++) {
          if (Thread.interrupted()) {
            throw new InterruptedException(
                "structured pruning interrupted before kept layer " + layer);
          }
          int oldLayer = plan.layers()[layer];
          progress.report(
              layer,
              pruned.numHiddenLayers(),
              "slice layer " + oldLayer,
              0.2 + 0.8 * layer / pruned.numHiddenLayers());
          String prefix = LlamaTensorNames.layerPrefix(layer);
          for (Map.Entry<String, long[]> e : shapes.entrySet()) {
            if (!e.getKey().startsWith(prefix)) {
              continue;
            }
            String suffix = e.getKey().substring(prefix.length());
            String oldName = LlamaTensorNames.layerPrefix(oldLayer) + suffix;
            float[] values = slice(config, plan, layer, suffix, checkpoint.floats(oldName));
            checkSize(e.getKey(), values, e.getValue());
            writer.write(
                e.getKey(),
                TensorData.ofFloats(checkpoint.info(oldName).dtype(), e.getValue(), values));
          }
          progress.report(
              layer,
              pruned.numHiddenLayers(),
              "done",
              0.2 + 0.8 * (layer + 1) / pruned.numHiddenLayers());
        }
        copy(writer, checkpoint, LlamaTensorNames.FINAL_NORM);
        if (shapes.containsKey(LlamaTensorNames.LM_HEAD)) {
          copy(writer, checkpoint, LlamaTensorNames.LM_HEAD);
        }
        files = writer.finish();
      }
      pruned.write(out);
      return new Streamed(pruned, files);
    }
  }

  /** Copies a tensor as stored, from the mapped input to the writer. */
  private static void copy(ShardedCheckpointWriter writer, Checkpoint checkpoint, String name)
      throws IOException {
    TensorInfo info = checkpoint.info(name);
    writer.write(
        name, TensorSource.lazy(info.dtype(), info.shape(), () -> checkpoint.segment(name)));
  }

  /**
   * e_c = ||W[:, c]||^2 * sum_t x_tc^2 for each input channel c of {@code module} ({@code rows x
   * cols} weight).
   */
  static double[] channelEnergy(
      LlamaConfig config,
      CalibrationStats stats,
      Function<String, float[]> weights,
      String module,
      int rows,
      int cols) {
    LayerStats s = stats.layer(module);
    if (s.inFeatures() != cols) {
      throw new IllegalArgumentException(
          module + ": calibration has " + s.inFeatures() + " input channels, the model " + cols);
    }
    float[] w = weights.apply(module);
    double[] e = new double[cols];
    for (int r = 0; r < rows; r++) {
      for (int c = 0; c < cols; c++) {
        double v = w[r * cols + c];
        e[c] += v * v;
      }
    }
    for (int c = 0; c < cols; c++) {
      e[c] *= s.sumSq()[c];
    }
    return e;
  }

  /** Indices of the {@code k} largest values, ascending by index (ties: the earlier index kept). */
  static int[] highest(double[] values, int k) {
    return IntStream.range(0, values.length)
        .boxed()
        .sorted(
            (a, b) -> {
              int c = Double.compare(values[b], values[a]);
              return c != 0 ? c : Integer.compare(a, b);
            })
        .limit(k)
        .mapToInt(Integer::intValue)
        .sorted()
        .toArray();
  }

  private static long shapeSize(long[] shape) {
    long n = 1;
    for (long d : shape) {
      n *= d;
    }
    return n;
  }
}
