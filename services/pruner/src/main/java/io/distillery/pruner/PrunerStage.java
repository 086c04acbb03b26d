package io.distillery.pruner;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import io.distillery.model.CheckpointException;
import io.distillery.model.calib.CalibrationInput;
import io.distillery.model.calib.CalibrationStats;
import io.distillery.model.config.LlamaConfig;
import io.distillery.model.config.LlamaTensorNames;
import io.distillery.model.llama.LlamaModel;
import io.distillery.model.quant.CompressedTensors;
import io.distillery.model.quant.QuantizationScheme;
import io.distillery.model.safetensors.DType;
import io.distillery.pruner.magnitude.MagnitudePruner;
import io.distillery.pruner.sparsegpt.SparseGptPruner;
import io.distillery.pruner.structured.StructuredPruner;
import io.distillery.pruner.wanda.WandaPruner;
import io.distillery.stage.ArtefactFormats;
import io.distillery.stage.Stage;
import io.distillery.stage.StageContext;
import io.distillery.stage.StageException;
import io.distillery.stage.StagePlugin;
import io.distillery.stage.StageResult;
import java.io.IOException;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The pruner worker's stage: magnitude, Wanda or SparseGPT masks (unstructured or 2:4) on every
 * linear layer the user does not exclude, or structured removal of heads, MLP channels and layers.
 * Writes an F32 Hugging Face checkpoint ({@code hf-llama}); the worker host adds its lineage
 * manifest.
 *
 * <p>The model pruned is the last upstream {@code hf-llama} artefact when there is one (e.g. after
 * a distillation node), else the run's registered model.
 */
@StagePlugin(
    name = "pruner",
    params = PrunerParams.class,
    description =
        "magnitude / Wanda / SparseGPT (unstructured, 2:4) and structured pruning of Llama checkpoints")
public final class PrunerStage implements Stage<PrunerParams> {

  public static final String FORMAT = ArtefactFormats.HF_LLAMA;

  private static final Logger LOG = LoggerFactory.getLogger(PrunerStage.class);
  private static final ObjectMapper JSON =
      new ObjectMapper()
          .enable(SerializationFeature.INDENT_OUTPUT)
          .enable(SerializationFeature.ORDER_MAP_ENTRIES_BY_KEYS);

  @Override
  public StageResult run(StageContext<PrunerParams> ctx)
      throws StageException, InterruptedException {
    PrunerParams p = ctx.params();
    Path parent = parent(ctx);
    String jobId = ctx.job() == null ? "-" : ctx.job().getJobId();
    LOG.info(
        "pruning jobId={} stage=pruner method={} pattern={} model={}",
        jobId,
        p.method(),
        p.pattern(),
        parent);
    CalibrationStats stats =
        p.method().equals("magnitude")
            ? null
            : CalibrationInput.read(ctx, "method " + ctx.params().method());
    Path out = ctx.scratch().resolve("model");
    Map<String, Double> metrics = new LinkedHashMap<>();
    ctx.progress(0, "loading " + parent.getFileName());
    try (LlamaModel model = LlamaModel.load(parent)) {
      long before = LlamaTensorNames.parameterCount(model.config());
      metrics.put("params_before", (double) before);
      if (p.method().equals("structured")) {
        LlamaConfig pruned =
            StructuredPruner.prune(
                model,
                stats,
                p.headFraction(),
                p.mlpFraction(),
                p.dropLayers(),
                out,
                (done, total) ->
                    ctx.progress(100.0 * done / total, "wrote layer " + done + "/" + total));
        long after = LlamaTensorNames.parameterCount(pruned);
        metrics.put("params_after", (double) after);
        metrics.put("nonzero_params_after", (double) after);
        metrics.put("param_reduction", 1.0 - (double) after / before);
        metrics.put("num_hidden_layers", (double) pruned.numHiddenLayers());
        metrics.put("num_attention_heads", (double) pruned.numAttentionHeads());
        metrics.put("num_key_value_heads", (double) pruned.numKeyValueHeads());
        metrics.put("intermediate_size", (double) pruned.intermediateSize());
      } else {
        pruneLinearLayers(ctx, model, stats, metrics);
        ctx.progress(99, "saving");
        model.save(out, DType.F32);
        if (p.sparsityPattern() instanceof SparsityPattern.NOfM nm && nm.n() == 2 && nm.m() == 4) {
          // compressed-tensors' dense sparsity_config, so that engines see the 2:4 structure (issue
          // 17)
          List<String> targets =
              model.linearLayerNames().stream()
                  .filter(
                      m ->
                          !p.excludes(m)
                              && !(m.equals(LlamaTensorNames.LM_HEAD_MODULE)
                                  && model.config().tieWordEmbeddings()))
                  .toList();
          CompressedTensors.writeSparseConfig(
              out,
              model.config().withTorchDtype("float32"),
              new QuantizationScheme.Sparsity("2:4", targets, metrics.get("sparsity")));
        }
        metrics.put("params_after", (double) before);
        metrics.put("nonzero_params_after", before - metrics.get("zeros"));
      }
    } catch (CheckpointException e) {
      throw StageException.fatal("cannot prune " + parent + ": " + e.getMessage(), e);
    } catch (IllegalArgumentException | IllegalStateException e) {
      throw StageException.fatal("pruner " + p.method() + " failed: " + e.getMessage(), e);
    } catch (IOException e) {
      throw StageException.retryable("cannot read or write the model: " + e.getMessage(), e);
    }
    metrics.remove("zeros");
    ctx.progress(100, "pruned", metrics);
    LOG.info("pruned jobId={} stage=pruner metrics={}", jobId, metrics);
    return StageResult.of(List.of(new StageResult.Output(out, FORMAT)), metrics);
  }

  private static void pruneLinearLayers(
      StageContext<PrunerParams> ctx,
      LlamaModel model,
      CalibrationStats stats,
      Map<String, Double> metrics)
      throws InterruptedException {
    PrunerParams p = ctx.params();
    SparsityPattern pattern = p.sparsityPattern();
    LinearPruner pruner =
        switch (p.method()) {
          case "magnitude" -> new MagnitudePruner(pattern);
          case "wanda" -> WandaPruner.of(pattern, stats);
          case "sparsegpt" -> {
            if (pattern instanceof SparsityPattern.NOfM nm && p.blockSize() % nm.m() != 0) {
              throw new IllegalArgumentException(
                  "blockSize "
                      + p.blockSize()
                      + " is not a multiple of "
                      + nm.m()
                      + " (pattern "
                      + p.pattern()
                      + ")");
            }
            yield SparseGptPruner.of(pattern, stats, p.damp(), p.blockSize());
          }
          default -> throw new IllegalStateException("unhandled method " + p.method());
        };
    List<String> modules = model.linearLayerNames();
    long zeros = 0;
    long total = 0;
    int layers = 0;
    for (int i = 0; i < modules.size(); i++) {
      String module = modules.get(i);
      if (Thread.interrupted()) {
        throw new InterruptedException("pruning interrupted at " + module);
      }
      boolean tiedHead =
          module.equals(LlamaTensorNames.LM_HEAD_MODULE) && model.config().tieWordEmbeddings();
      if (p.excludes(module) || tiedHead) {
        continue;
      }
      long[] shape = model.parameters().get(LlamaTensorNames.weight(module)).getShape().getShape();
      int rows = Math.toIntExact(shape[0]);
      int cols = Math.toIntExact(shape[1]);
      float[] pruned = pruner.prune(module, model.linearWeight(module), rows, cols);
      for (float v : pruned) {
        zeros += v == 0f ? 1 : 0;
      }
      total += pruned.length;
      layers++;
      model.replaceLinearWeight(module, pruned);
      if (module.endsWith("down_proj") || i == modules.size() - 1) {
        ctx.progress(
            99.0 * (i + 1) / modules.size(),
            "pruned " + module,
            Map.of("sparsity", total == 0 ? 0 : (double) zeros / total));
      }
    }
    if (layers == 0) {
      throw new IllegalArgumentException(
          "exclude " + p.exclude() + " leaves no linear layer to prune");
    }
    metrics.put("sparsity", (double) zeros / total);
    metrics.put("layers_pruned", (double) layers);
    metrics.put("zeros", (double) zeros);
  }

  /** The checkpoint pruned: the last upstream {@value #FORMAT} output, else the run's model. */
  private static Path parent(StageContext<PrunerParams> ctx) throws StageException {
    List<StageContext.Artefact> upstream = ctx.artefacts(FORMAT);
    if (!upstream.isEmpty()) {
      return upstream.getLast().path();
    }
    if (ctx.model() == null) {
      throw StageException.fatal(
          "the pruner needs a model: the run has none and no upstream node produced " + FORMAT);
    }
    return ctx.model();
  }
}
