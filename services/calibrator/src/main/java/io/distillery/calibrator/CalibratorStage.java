package io.distillery.calibrator;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import io.distillery.model.CheckpointException;
import io.distillery.model.MemoryBudget;
import io.distillery.model.calib.CalibrationStats;
import io.distillery.model.calib.StatsAccumulator;
import io.distillery.model.config.LlamaConfig;
import io.distillery.model.config.LlamaTensorNames;
import io.distillery.model.config.ModelConfigException;
import io.distillery.model.llama.LinearInputObserver;
import io.distillery.model.llama.LlamaModel;
import io.distillery.model.safetensors.Checkpoint;
import io.distillery.model.stream.CalibrationTokens;
import io.distillery.model.stream.LayerStreamer;
import io.distillery.model.stream.LayerVisitor;
import io.distillery.model.stream.LayerWeights;
import io.distillery.model.stream.MemoryPlan;
import io.distillery.model.tasks.TaskSettings;
import io.distillery.model.tokenizer.TextTokenizer;
import io.distillery.stage.Stage;
import io.distillery.stage.StageContext;
import io.distillery.stage.StageException;
import io.distillery.stage.StagePlugin;
import io.distillery.stage.StageResult;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.UUID;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Runs the run's model over calibration samples and records, per linear layer input channel,
 * abs-max, sum |x|, sum x^2, an |x| histogram for entropy range selection and (with {@code
 * hessian}) X^T X, as one {@value CalibrationStats#FILE_NAME} in a directory artefact of format
 * {@value CalibrationStats#FORMAT} that the quantizer and pruner take as an input, beside the
 * samples' token ids ({@value CalibrationTokens#FILE_NAME}) for the streamed stages.
 *
 * <p>Samples of equal length are batched (no padding reaches the statistics). Modules that read one
 * tensor (q/k/v, gate/up) are accumulated once and reported under each name. The histogram range of
 * a layer is fixed by the first (longest) batch's abs-max times {@value #HIST_HEADROOM}; later
 * larger values count in the last bin.
 *
 * <p>Memory: every layer's statistics are held at once, dominated by X^T X (8 n^2 bytes per
 * distinct input, in doubles) - e.g. about 1.6 GiB for a 7B Llama (4096-wide inputs of attention,
 * o_proj and up, 11008-wide down_proj, per layer, times 32 layers, plus lm_head). That is fine for
 * the project's tiny models. A large model would need the GPTQ-style layer-wise schedule instead:
 * run the embeddings once, keep the hidden states of all samples, then for one decoder layer at a
 * time observe its linear inputs, write that layer's statistics and drop them, and feed the layer's
 * outputs to the next layer; the output file would be written tensor by tensor (the writer already
 * streams lazy tensors).
 */
@StagePlugin(
    name = "calibrator",
    params = CalibratorParams.class,
    description =
        "per-layer activation statistics (abs-max, mean |x|, L2, histogram, X^T X) over calibration samples")
public final class CalibratorStage implements Stage<CalibratorParams> {

  private static final Logger LOG = LoggerFactory.getLogger(CalibratorStage.class);

  static final float HIST_HEADROOM = 2.0f;
  static final int MAX_BATCH_TOKENS = 4096;
  static final int MAX_BATCH_ROWS = 16;
  static final String DATASET_FORMAT = "dataset";

  @Override
  public StageResult run(StageContext<CalibratorParams> ctx)
      throws StageException, InterruptedException {
    long started = System.nanoTime();
    CalibratorParams p = ctx.params();
    String runId = ctx.job().getRunId().toString();
    String jobId = ctx.job().getJobId().toString();
    List<String> texts;
    String datasetSha = null;
    if (p.source().equals(CalibratorParams.SOURCE_DATASET)) {
      List<StageContext.Artefact> datasets = ctx.artefacts(DATASET_FORMAT);
      if (datasets.isEmpty()) {
        throw StageException.fatal(
            "source=dataset needs an input artefact of format '"
                + DATASET_FORMAT
                + "' (add a node producing it to the calibrator's 'after' list)");
      }
      StageContext.Artefact dataset = datasets.getFirst();
      datasetSha = dataset.ref().getSha256().toString();
      try {
        texts = CalibrationSamples.fromDataset(dataset.path(), p.samples());
      } catch (IOException e) {
        throw StageException.retryable(
            "cannot read the calibration dataset " + dataset.path() + ": " + e.getMessage(), e);
      }
    } else {
      texts = CalibrationSamples.fromTasks(p.samples(), p.seed(), taskSettings(ctx.model()));
    }

    // the checkpoint a chain hands over (e.g. the distilled student); its tokenizer, else the
    // registered model's
    Path subject = ctx.inputModel();
    LlamaConfig config = readConfig(subject);
    validateCheckpoint(subject, config);
    long wholeModel = wholeModelBytes(config, p.hessian());
    if (wholeModel > ctx.memoryBudgetBytes()) {
      LOG.info(
          "calibrating streamed runId={} jobId={} stage=calibrator wholeModelBytes={} budgetBytes={}",
          runId,
          jobId,
          wholeModel,
          ctx.memoryBudgetBytes());
      return streamed(ctx, config, subject, texts, datasetSha, started);
    }
    try (LlamaModel model = loadModel(subject)) {
      TextTokenizer tokenizer =
          loadTokenizer(TextTokenizer.present(subject) ? subject : ctx.model());
      int seqLen = Math.min(p.seqLen(), model.config().maxPositionEmbeddings());
      List<int[]> samples =
          CalibrationSamples.tokenize(texts, tokenizer, seqLen, model.config().vocabSize());
      if (samples.isEmpty()) {
        throw StageException.fatal(
            "no calibration sample has any tokens (source=" + p.source() + ")");
      }
      if (samples.size() < p.samples()) {
        LOG.warn(
            "fewer calibration samples than asked runId={} jobId={} stage=calibrator samples={} asked={}",
            runId,
            jobId,
            samples.size(),
            p.samples());
      }
      long totalTokens = samples.stream().mapToLong(s -> s.length).sum();
      List<int[][]> batches = CalibrationSamples.batches(samples, MAX_BATCH_TOKENS, MAX_BATCH_ROWS);
      LOG.info(
          "calibrating runId={} jobId={} stage=calibrator samples={} tokens={} batches={} seqLen={} hessian={}",
          runId,
          jobId,
          samples.size(),
          totalTokens,
          batches.size(),
          seqLen,
          p.hessian());

      StatsAccumulator accumulator =
          new StatsAccumulator(p.bins(), HIST_HEADROOM, Set.of(), p.hessian());
      SharedInputObserver observer = new SharedInputObserver(accumulator);
      long done = 0;
      try (LlamaModel.ObserverRegistration ignored = model.observeLinearInputs(observer);
          NDManager scope = model.manager().newSubManager()) {
        for (int b = 0; b < batches.size(); b++) {
          if (Thread.currentThread().isInterrupted()) {
            throw new InterruptedException(
                "calibration interrupted after " + b + " of " + batches.size() + " batches");
          }
          int[][] batch = batches.get(b);
          try (NDManager step = scope.newSubManager()) {
            model.forward(step, batch).close();
          }
          observer.endOfPass();
          done += (long) batch.length * batch[0].length;
          ctx.progress(
              95.0 * done / totalTokens,
              "batch "
                  + (b + 1)
                  + "/"
                  + batches.size()
                  + ": "
                  + done
                  + "/"
                  + totalTokens
                  + " tokens",
              Map.of("tokens", (double) done));
        }
      }

      Map<String, String> metadata = new LinkedHashMap<>();
      metadata.put("samples", Integer.toString(samples.size()));
      metadata.put("seqLen", Integer.toString(seqLen));
      metadata.put("tokens", Long.toString(totalTokens));
      metadata.put("source", p.source());
      metadata.put("seed", Long.toString(p.seed()));
      metadata.put("bins", Integer.toString(p.bins()));
      metadata.put("hessian", Boolean.toString(p.hessian()));
      metadata.put("model_sha256", ctx.job().getModel().getSha256().toString());
      if (datasetSha != null) {
        metadata.put("dataset_sha256", datasetSha);
      }
      CalibrationStats stats = accumulator.result(metadata);
      List<String> missing = new ArrayList<>(model.linearLayerNames());
      missing.removeAll(stats.layers().keySet());
      if (!missing.isEmpty()) {
        throw StageException.fatal(
            "the forward pass never reached linear layers "
                + missing
                + "; the model is not a supported Llama layout");
      }

      // the artefact is a directory: the statistics, and the samples' token ids that a streamed
      // stage runs through the
      // model one layer at a time (sequential GPTQ computes each layer's Hessians itself, on the
      // quantized inputs)
      Path out = ctx.scratch().resolve("calibration");
      try {
        Files.createDirectories(out);
        stats.write(out.resolve(CalibrationStats.FILE_NAME));
        new CalibrationTokens(samples).write(out.resolve(CalibrationTokens.FILE_NAME));
      } catch (IOException e) {
        throw StageException.retryable("cannot write " + out + ": " + e.getMessage(), e);
      }
      double seconds = (System.nanoTime() - started) / 1e9;
      ctx.progress(
          100, "wrote " + CalibrationStats.FILE_NAME + " (" + stats.layers().size() + " layers)");
      LOG.info(
          "calibrated runId={} jobId={} stage=calibrator layers={} tokens={} seconds={}",
          runId,
          jobId,
          stats.layers().size(),
          totalTokens,
          String.format(Locale.ROOT, "%.2f", seconds));
      return StageResult.of(
          List.of(new StageResult.Output(out, CalibrationStats.FORMAT)),
          Map.of(
              "tokens",
              (double) totalTokens,
              "samples",
              (double) samples.size(),
              "layers",
              (double) stats.layers().size(),
              "seconds",
              seconds));
    } catch (IllegalArgumentException e) {
      throw StageException.fatal("calibration failed on the model's input: " + e.getMessage(), e);
    }
  }

  /**
   * What the whole-model path holds: the model in F32, one batch's logits (twice), and with {@code
   * hessian} X^T X of every distinct linear input of every layer in f64 (q/k/v and gate/up share
   * theirs) and of the LM head.
   */
  static long wholeModelBytes(LlamaConfig config, boolean hessian) {
    long bytes =
        MemoryPlan.RUNTIME_BYTES
            + MemoryBudget.denseF32Bytes(config)
            + 2L * MAX_BATCH_TOKENS * config.vocabSize() * 4;
    if (hessian) {
      long h = config.hiddenSize();
      long a = config.attentionWidth();
      long i = config.intermediateSize();
      bytes += (config.numHiddenLayers() * (2 * h * h + a * a + i * i) + h * h) * 8;
    }
    return bytes;
  }

  /**
   * A model too large for the whole-model path: the statistics are collected on the layer-streaming
   * executor, one decoder layer at a time ({@link LayerStreamer}, one pass over the original
   * layers), without X^T X (all layers' Hessians are what does not fit; streamed GPTQ computes each
   * layer's from the token ids written beside the statistics, sequentially) and without the LM
   * head's statistics (the quantizer leaves it dense by default).
   */
  private static StageResult streamed(
      StageContext<CalibratorParams> ctx,
      LlamaConfig config,
      Path subject,
      List<String> texts,
      String datasetSha,
      long started)
      throws StageException, InterruptedException {
    CalibratorParams p = ctx.params();
    TextTokenizer tokenizer = loadTokenizer(TextTokenizer.present(subject) ? subject : ctx.model());
    int seqLen = Math.min(p.seqLen(), config.maxPositionEmbeddings());
    List<int[]> samples = CalibrationSamples.tokenize(texts, tokenizer, seqLen, config.vocabSize());
    if (samples.isEmpty()) {
      throw StageException.fatal(
          "no calibration sample has any tokens (source=" + p.source() + ")");
    }
    long totalTokens = samples.stream().mapToLong(s -> s.length).sum();
    List<int[][]> batches = CalibrationSamples.batches(samples, MAX_BATCH_TOKENS, MAX_BATCH_ROWS);
    long batchTokens = 0;
    int batchRows = 0;
    int longest = 0;
    for (int[][] b : batches) {
      batchTokens = Math.max(batchTokens, (long) b.length * b[0].length);
      batchRows = Math.max(batchRows, b.length);
      longest = Math.max(longest, b[0].length);
    }
    MemoryPlan plan =
        MemoryPlan.estimate(config, totalTokens, batchTokens, batchRows, longest, false);
    String refusal = plan.refusal(ctx.memoryBudgetBytes());
    if (refusal != null) {
      throw StageException.fatal("calibrator " + refusal);
    }
    StatsAccumulator accumulator = new StatsAccumulator(p.bins(), HIST_HEADROOM, Set.of(), false);
    SharedInputObserver observer = new SharedInputObserver(accumulator);
    LayerVisitor visitor =
        new LayerVisitor() {
          @Override
          public boolean observes() {
            return true;
          }

          @Override
          public void observe(int layer, String module, NDArray input) {
            observer.onLinearInput(module, input);
          }

          @Override
          public void endOfBatch(int layer) {
            observer.endOfPass();
          }

          @Override
          public void rewrite(LayerWeights weights, StepListener step) {}
        };
    try {
      new LayerStreamer(subject, config, LayerStreamer.Options.defaults().withSequential(false))
          .run(
              batches,
              visitor,
              null,
              ctx.scratch().resolve("stream-work"),
              UUID.randomUUID().toString(),
              (layer, layers, step, fraction) ->
                  ctx.progress(95 * fraction, "layer " + (layer + 1) + "/" + layers + ": " + step));
      Map<String, String> metadata = new LinkedHashMap<>();
      metadata.put("samples", Integer.toString(samples.size()));
      metadata.put("seqLen", Integer.toString(seqLen));
      metadata.put("tokens", Long.toString(totalTokens));
      metadata.put("source", p.source());
      metadata.put("seed", Long.toString(p.seed()));
      metadata.put("bins", Integer.toString(p.bins()));
      metadata.put("hessian", "false");
      metadata.put("streamed", "true");
      metadata.put("model_sha256", ctx.job().getModel().getSha256().toString());
      if (datasetSha != null) {
        metadata.put("dataset_sha256", datasetSha);
      }
      CalibrationStats stats = accumulator.result(metadata);
      Path out = Files.createDirectories(ctx.scratch().resolve("calibration"));
      stats.write(out.resolve(CalibrationStats.FILE_NAME));
      new CalibrationTokens(samples).write(out.resolve(CalibrationTokens.FILE_NAME));
      double seconds = (System.nanoTime() - started) / 1e9;
      ctx.progress(
          100,
          "wrote "
              + CalibrationStats.FILE_NAME
              + " ("
              + stats.layers().size()
              + " layers, streamed)");
      return StageResult.of(
          List.of(new StageResult.Output(out, CalibrationStats.FORMAT)),
          Map.of(
              "tokens",
              (double) totalTokens,
              "samples",
              (double) samples.size(),
              "layers",
              (double) stats.layers().size(),
              "seconds",
              seconds,
              "streamed",
              1.0));
    } catch (CheckpointException e) {
      throw StageException.fatal("cannot calibrate the model: " + e.getMessage(), e);
    } catch (IOException e) {
      throw StageException.retryable("cannot calibrate the model: " + e.getMessage(), e);
    } catch (IllegalArgumentException e) {
      throw StageException.fatal("calibration failed on the model's input: " + e.getMessage(), e);
    }
  }

  /**
   * Refuses a corrupt checkpoint (a missing or truncated shard, a tensor whose shape disagrees with
   * config.json) from its headers alone, before the memory plan and before any work: the problem
   * with the files is the one to report.
   */
  private static void validateCheckpoint(Path dir, LlamaConfig config) throws StageException {
    try (Checkpoint checkpoint = Checkpoint.open(dir)) {
      LlamaTensorNames.validate(checkpoint, config);
    } catch (CheckpointException e) {
      throw StageException.fatal("cannot calibrate the model: " + e.getMessage(), e);
    } catch (IOException e) {
      throw StageException.retryable("cannot read the model: " + e.getMessage(), e);
    }
  }

  private static LlamaConfig readConfig(Path dir) throws StageException {
    try {
      return LlamaConfig.read(dir.resolve(LlamaConfig.FILE_NAME));
    } catch (ModelConfigException e) {
      throw StageException.fatal("cannot calibrate the model: " + e.getMessage(), e);
    } catch (IOException e) {
      throw StageException.retryable("cannot read config.json: " + e.getMessage(), e);
    }
  }

  private static LlamaModel loadModel(Path dir) throws StageException {
    try {
      return LlamaModel.load(dir);
    } catch (CheckpointException e) {
      throw StageException.fatal("cannot calibrate the model: " + e.getMessage(), e);
    } catch (IOException e) {
      throw StageException.retryable("cannot read the model: " + e.getMessage(), e);
    }
  }

  /**
   * The task settings the run's model was trained on ({@link TaskSettings#forModel}); a broken file
   * is fatal.
   */
  private static TaskSettings taskSettings(Path model) throws StageException {
    try {
      return TaskSettings.forModel(model);
    } catch (IOException e) {
      throw StageException.fatal("cannot draw task samples for the model: " + e.getMessage(), e);
    }
  }

  private static TextTokenizer loadTokenizer(Path dir) throws StageException {
    try {
      return TextTokenizer.load(dir);
    } catch (CheckpointException e) {
      throw StageException.fatal("cannot calibrate the model: " + e.getMessage(), e);
    } catch (IOException e) {
      throw StageException.retryable("cannot read the tokenizer: " + e.getMessage(), e);
    }
  }

  /**
   * Feeds each linear input to the accumulator once: a module handed the very tensor the previous
   * module was handed (q/k/v read one normed hidden state, gate/up another) shares that module's
   * statistics instead of recomputing them. Identity, not equality, decides, so a model that passes
   * distinct tensors is simply accumulated per module.
   */
  static final class SharedInputObserver implements LinearInputObserver {

    private final StatsAccumulator accumulator;
    private NDArray lastInput;
    private String lastModule;

    SharedInputObserver(StatsAccumulator accumulator) {
      this.accumulator = accumulator;
    }

    @Override
    public void onLinearInput(String module, NDArray input) {
      if (input == lastInput) {
        accumulator.share(module, lastModule);
        return;
      }
      long[] shape = input.getShape().getShape();
      accumulator.add(module, input.toFloatArray(), Math.toIntExact(shape[shape.length - 1]));
      lastInput = input;
      lastModule = module;
    }

    /** Forgets the last tensor, so one from the next pass is never mistaken for it. */
    void endOfPass() {
      lastInput = null;
      lastModule = null;
    }
  }
}
