package io.distillery.quantizer;

import io.distillery.platform.model.CheckpointException;
import io.distillery.platform.model.calib.CalibrationInput;
import io.distillery.platform.model.calib.CalibrationStats;
import io.distillery.platform.model.calib.LayerStats;
import io.distillery.platform.model.config.LlamaConfig;
import io.distillery.platform.model.config.LlamaTensorNames;
import io.distillery.platform.model.config.ModelConfigException;
import io.distillery.platform.model.config.Projection;
import io.distillery.platform.model.quant.CompressedTensors;
import io.distillery.platform.model.quant.QuantizationScheme;
import io.distillery.platform.model.quant.QuantizedWeight;
import io.distillery.platform.model.safetensors.Checkpoint;
import io.distillery.platform.stage.Stage;
import io.distillery.platform.stage.StageContext;
import io.distillery.platform.stage.StageException;
import io.distillery.platform.stage.StagePlugin;
import io.distillery.platform.stage.StageResult;
import io.distillery.quantizer.awq.AwqScaleSearch;
import io.distillery.quantizer.gptq.Gptq;
import io.distillery.quantizer.rtn.RoundToNearest;
import io.distillery.quantizer.smoothquant.SmoothQuant;
import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The quantizer worker's stage: reads a Hugging Face Llama checkpoint (and, for AWQ, GPTQ and SmoothQuant, the
 * calibrator's statistics), quantizes every linear layer not excluded, and writes a compressed-tensors checkpoint
 * (see {@link CompressedTensors}) that vLLM loads and the model core runs dequantized. Progress is reported per
 * layer.
 */
@StagePlugin(name = "quantizer", params = QuantizerParams.class,
    description = "post-training weight quantization (RTN, AWQ, GPTQ, SmoothQuant W8A8, FP8) to compressed-tensors")
public final class QuantizerStage implements Stage<QuantizerParams> {

  public static final String OUTPUT_FORMAT = "compressed-tensors";

  private static final Logger LOG = LoggerFactory.getLogger(QuantizerStage.class);

  @Override
  public StageResult run(StageContext<QuantizerParams> ctx) throws StageException, InterruptedException {
    QuantizerParams params = ctx.params();
    Scheme scheme = params.schemeValue();
    LlamaConfig config = readConfig(ctx.inputModel());
    Map<String, long[]> shapes = LlamaTensorNames.shapes(config);
    List<String> modules = new ArrayList<>();
    for (String module : LlamaTensorNames.linearModules(config)) {
      boolean tiedHead = module.equals(LlamaTensorNames.LM_HEAD_MODULE) && config.tieWordEmbeddings();
      if (!params.excludes(module) && !tiedHead) {
        modules.add(module);
      }
    }
    if (scheme.grouped()) {
      for (String module : modules) {
        long cols = shapes.get(LlamaTensorNames.weight(module))[1];
        if (cols % params.groupSize() != 0) {
          throw StageException.fatal("groupSize: " + params.groupSize() + " does not divide in_features " + cols
              + " of " + module);
        }
      }
    }
    CalibrationStats stats = scheme.needsCalibration() ? CalibrationInput.read(ctx, "scheme " + ctx.params().scheme()) : null;
    long[] sourceBytes = new long[1];
    Map<String, float[]> tensors = readTensors(ctx.inputModel(), config, modules, sourceBytes);
    long bytesBefore = sourceBytes[0];
    ctx.progress(2, "loaded " + ctx.inputModel().getFileName() + " scheme=" + scheme.id());

    Map<String, Float> inputScales = new LinkedHashMap<>();
    Map<String, Double> metrics = new LinkedHashMap<>();
    try {
      switch (scheme) {
        case W8A8_SMOOTHQUANT -> smooth(config, tensors, stats, params, modules, inputScales);
        case W4_AWQ -> metrics.put("awq_mean_ratio", awqScale(config, tensors, stats, params));
        default -> { }
      }
      Map<String, QuantizedWeight> quantized = new LinkedHashMap<>();
      long bytesAfter = 0;
      for (int i = 0; i < modules.size(); i++) {
        if (Thread.interrupted()) {
          throw new InterruptedException("quantizer interrupted at " + modules.get(i));
        }
        String module = modules.get(i);
        long[] shape = shapes.get(LlamaTensorNames.weight(module));
        int rows = Math.toIntExact(shape[0]);
        int cols = Math.toIntExact(shape[1]);
        float[] w = tensors.get(LlamaTensorNames.weight(module));
        QuantizedWeight q = scheme == Scheme.W4_GPTQ
            ? Gptq.quantize(w, rows, cols, stats.layer(module).hessian(), params.groupSize(), params.damp(),
                params.actOrder())
            : RoundToNearest.quantize(scheme.kind(), w, rows, cols, params.groupSize());
        quantized.put(module, q);
        bytesAfter += q.storageBytes();
        ctx.progress(5 + 90.0 * (i + 1) / modules.size(), "quantized " + module,
            Map.of("layers_quantized", (double) (i + 1)));
      }
      Path out = ctx.scratch().resolve("quantized");
      List<String> ignore = LlamaTensorNames.linearModules(config).stream().filter(m -> !quantized.containsKey(m))
          .toList();
      CompressedTensors.write(out, config, tensors, quantized, inputScales,
          new QuantizationScheme(scheme.kind(), params.groupSize(), scheme == Scheme.W8A8_SMOOTHQUANT, ignore));
      metrics.put("weight_bytes_before", (double) bytesBefore);
      metrics.put("weight_bytes_after", (double) bytesAfter);
      metrics.put("compression_ratio", bytesAfter == 0 ? 1.0 : (double) bytesBefore / bytesAfter);
      metrics.put("layers_quantized", (double) quantized.size());
      LOG.info("quantized stage=quantizer scheme={} layers={} bytesBefore={} bytesAfter={}", scheme.id(),
          quantized.size(), bytesBefore, bytesAfter);
      ctx.progress(100, "wrote compressed-tensors checkpoint");
      return StageResult.of(List.of(new StageResult.Output(out, OUTPUT_FORMAT)), metrics);
    } catch (IllegalArgumentException | IllegalStateException e) {
      // missing calibration statistics for a layer, a Hessian that was not collected, inconsistent shapes
      throw StageException.fatal("quantizer " + scheme.id() + ": " + e.getMessage(), e);
    } catch (IOException e) {
      throw StageException.retryable("cannot write the quantized checkpoint: " + e.getMessage(), e);
    }
  }

  /** SmoothQuant on q/k/v (input_layernorm) and gate/up (post_attention_layernorm); static scales for all. */
  static void smooth(LlamaConfig config, Map<String, float[]> tensors, CalibrationStats stats, QuantizerParams params,
      List<String> modules, Map<String, Float> inputScales) {
    int hidden = config.hiddenSize();
    Map<String, float[]> smoothing = new LinkedHashMap<>();
    for (int layer = 0; layer < config.numHiddenLayers(); layer++) {
      List<Projection> attn = List.of(Projection.Q, Projection.K, Projection.V);
      List<Projection> mlp = List.of(Projection.GATE, Projection.UP);
      for (List<Projection> group : List.of(attn, mlp)) {
        String norm = group == attn ? LlamaTensorNames.inputLayernorm(layer)
            : LlamaTensorNames.postAttentionLayernorm(layer);
        List<float[]> weights = new ArrayList<>();
        int[] rows = new int[group.size()];
        for (int i = 0; i < group.size(); i++) {
          weights.add(tensors.get(LlamaTensorNames.weight(group.get(i).module(layer))));
          rows[i] = group.get(i).outFeatures(config);
        }
        float[] absMax = stats.layer(group.getFirst().module(layer)).absMax();
        float[] s = SmoothQuant.scales(absMax, weights, rows, hidden, params.alpha());
        SmoothQuant.fold(tensors.get(norm), weights, rows, hidden, s);
        for (Projection p : group) {
          smoothing.put(p.module(layer), s);
        }
      }
    }
    for (String module : modules) {
      inputScales.put(module, SmoothQuant.inputScale(stats.layer(module).absMax(), smoothing.get(module)));
    }
  }

  /**
   * AWQ scales per decoder layer, folded so the float model is unchanged: down_proj's into up_proj's rows, gate/up's
   * into post_attention_layernorm, q/k/v's into input_layernorm (o_proj keeps s = 1: with grouped-query attention its
   * input channels do not map one-to-one onto v_proj's rows). Returns the mean chosen exponent.
   */
  static double awqScale(LlamaConfig config, Map<String, float[]> tensors, CalibrationStats stats,
      QuantizerParams params) {
    double ratioSum = 0;
    int searches = 0;
    for (int layer = 0; layer < config.numHiddenLayers(); layer++) {
      // down_proj: input = act(gate) * up, so 1/s folds into up_proj's output rows
      int inter = config.intermediateSize();
      int hidden = config.hiddenSize();
      float[] down = tensors.get(LlamaTensorNames.weight(Projection.DOWN.module(layer)));
      AwqScaleSearch.Result r = search(List.of(down), new int[] {hidden}, inter,
          stats.layer(Projection.DOWN.module(layer)), params);
      scaleColumns(down, hidden, inter, r.scales());
      float[] up = tensors.get(LlamaTensorNames.weight(Projection.UP.module(layer)));
      for (int row = 0; row < inter; row++) {
        for (int j = 0; j < hidden; j++) {
          up[row * hidden + j] /= r.scales()[row];
        }
      }
      ratioSum += r.ratio();
      searches++;
      for (List<Projection> group : List.of(List.of(Projection.GATE, Projection.UP),
          List.of(Projection.Q, Projection.K, Projection.V))) {
        String norm = group.getFirst() == Projection.GATE ? LlamaTensorNames.postAttentionLayernorm(layer)
            : LlamaTensorNames.inputLayernorm(layer);
        List<float[]> weights = new ArrayList<>();
        int[] rows = new int[group.size()];
        for (int i = 0; i < group.size(); i++) {
          weights.add(tensors.get(LlamaTensorNames.weight(group.get(i).module(layer))));
          rows[i] = group.get(i).outFeatures(config);
        }
        AwqScaleSearch.Result g = search(weights, rows, hidden, stats.layer(group.getFirst().module(layer)), params);
        SmoothQuant.fold(tensors.get(norm), weights, rows, hidden, g.scales());
        ratioSum += g.ratio();
        searches++;
      }
    }
    return searches == 0 ? 0 : ratioSum / searches;
  }

  private static AwqScaleSearch.Result search(List<float[]> weights, int[] rows, int n, LayerStats s,
      QuantizerParams params) {
    return AwqScaleSearch.search(weights, rows, n, s.meanAbs(), s.gram(), s.sumSq(), params.groupSize(),
        params.awqGrid());
  }

  private static void scaleColumns(float[] w, int rows, int cols, float[] s) {
    for (int r = 0; r < rows; r++) {
      for (int j = 0; j < cols; j++) {
        w[r * cols + j] *= s[j];
      }
    }
  }

  private static LlamaConfig readConfig(Path model) throws StageException {
    try {
      return LlamaConfig.read(model.resolve(LlamaConfig.FILE_NAME));
    } catch (ModelConfigException e) {
      throw StageException.fatal("unsupported or invalid model config: " + e.getMessage(), e);
    } catch (IOException e) {
      throw StageException.retryable("cannot read config.json: " + e.getMessage(), e);
    }
  }

  /** Every tensor as floats; adds the stored bytes of the weights of {@code modules} to {@code weightBytes[0]}. */
  private static Map<String, float[]> readTensors(Path model, LlamaConfig config, List<String> modules,
      long[] weightBytes) throws StageException {
    Map<String, float[]> tensors = new LinkedHashMap<>();
    try (Checkpoint checkpoint = Checkpoint.open(model)) {
      for (String name : LlamaTensorNames.shapes(config).keySet()) {
        tensors.put(name, checkpoint.floats(name));
      }
      for (String module : modules) {
        String name = LlamaTensorNames.weight(module);
        weightBytes[0] += (long) tensors.get(name).length * checkpoint.info(name).dtype().byteSize();
      }
      return tensors;
    } catch (CheckpointException e) {
      throw StageException.fatal("cannot use the input checkpoint: " + e.getMessage(), e);
    } catch (IOException e) {
      throw StageException.retryable("cannot read the input checkpoint: " + e.getMessage(), e);
    }
  }
}
