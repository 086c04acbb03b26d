package io.distillery.evaluator;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.pytorch.jni.JniUtils;
import ai.djl.training.GradientCollector;
import io.distillery.model.config.LlamaConfig;
import io.distillery.model.config.LlamaTensorNames;
import io.distillery.model.llama.LlamaModel;
import io.distillery.model.quant.CompressedTensors;
import io.distillery.model.quant.GroupQuantizer;
import io.distillery.model.quant.QuantizationScheme;
import io.distillery.model.quant.QuantizedWeight;
import io.distillery.model.safetensors.DType;
import io.distillery.model.tasks.TaskBatch;
import io.distillery.model.tasks.TaskExample;
import io.distillery.model.tokenizer.ByteTokenizer;
import io.distillery.model.train.AdamW;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.UUID;

/**
 * Test fixtures: a tiny byte-level Llama that has memorised "copy one letter" ({@code "c:a="} to
 * {@code "a"}, 26 prompts) in a second or two of training, so exact match is high and meaningful;
 * and candidates made from it: an INT8 compressed-tensors copy (loaded dequantized) and a copy with
 * heavy noise on every linear weight.
 */
public final class TinyTeacher {

  public static final int STEPS = 150;

  public static final List<TaskExample> EXAMPLES = examples();

  private TinyTeacher() {}

  public static List<TaskExample> examples() {
    List<TaskExample> out = new ArrayList<>();
    for (char c = 'a'; c <= 'z'; c++) {
      out.add(new TaskExample("copy", "c:" + c + "=", String.valueOf(c)));
    }
    return out;
  }

  public static LlamaConfig config() {
    return LlamaConfig.builder()
        .vocabSize(ByteTokenizer.VOCAB_SIZE)
        .hiddenSize(32)
        .intermediateSize(64)
        .numHiddenLayers(1)
        .numAttentionHeads(4)
        .numKeyValueHeads(2)
        .maxPositionEmbeddings(64)
        .rmsNormEps(1e-5)
        .bosTokenId(ByteTokenizer.BOS_ID)
        .eosTokenIds(List.of(ByteTokenizer.EOS_ID))
        .build();
  }

  /** Trains until every example is memorised (loss tiny), then saves it with the byte tokenizer. */
  private static Path trained;

  /**
   * The trained teacher's checkpoint (with the byte tokenizer), trained once per test JVM under
   * {@code target/}. One PyTorch thread: these matrices are tiny and the build machine is shared.
   */
  public static synchronized Path checkpoint() throws IOException {
    if (trained == null) {
      Engine.getEngine("PyTorch");
      JniUtils.setNumThreads(1);
      Path dir = Files.createDirectories(Path.of("target", "tiny-teacher-" + UUID.randomUUID()));
      try (LlamaModel model = train(STEPS)) {
        trained = save(model, dir);
      }
    }
    return trained;
  }

  public static LlamaModel train(int steps) {
    LlamaModel model = LlamaModel.random(config(), 5);
    TaskBatch batch = TaskBatch.of(EXAMPLES, ByteTokenizer.instance());
    model.setTrainable(true);
    try (AdamW optimizer = new AdamW(model.parameters(), model.manager(), 0.9, 0.95, 1e-8, 0.0)) {
      for (int step = 0; step < steps; step++) {
        try (NDManager scope = model.manager().newSubManager();
            GradientCollector collector = Engine.getEngine("PyTorch").newGradientCollector()) {
          NDArray loss = batch.answerNllMean(model.forward(scope, batch.inputs()), scope);
          collector.backward(loss);
        }
        optimizer.step(1e-2, 1.0);
        model.zeroGradients();
      }
    } finally {
      model.setTrainable(false);
    }
    return model;
  }

  public static Path save(LlamaModel model, Path dir) throws IOException {
    model.save(dir, DType.F32);
    ByteTokenizer.instance().save(dir);
    return dir;
  }

  /**
   * INT8 per-channel compressed-tensors copy (lm_head dense), as the quantizer's w8-rtn writes it.
   */
  public static Path saveInt8(LlamaModel model, Path dir) throws IOException {
    LlamaConfig config = model.config();
    Map<String, float[]> dense = new LinkedHashMap<>();
    for (var e : model.parameters().entrySet()) {
      dense.put(e.getKey(), e.getValue().toFloatArray());
    }
    Map<String, QuantizedWeight> quantized = new LinkedHashMap<>();
    for (String module : LlamaTensorNames.linearModules(config)) {
      if (!module.equals(LlamaTensorNames.LM_HEAD_MODULE)) {
        long[] shape = LlamaTensorNames.shapes(config).get(LlamaTensorNames.weight(module));
        quantized.put(
            module,
            GroupQuantizer.int8PerChannel(
                dense.get(LlamaTensorNames.weight(module)), (int) shape[0], (int) shape[1]));
      }
    }
    CompressedTensors.write(
        dir,
        config,
        dense,
        quantized,
        Map.of(),
        new QuantizationScheme(
            QuantizedWeight.Kind.INT8_CHANNEL, 0, false, List.of(LlamaTensorNames.LM_HEAD_MODULE)));
    ByteTokenizer.instance().save(dir);
    return dir;
  }

  /** A copy with Gaussian noise of {@code sigma} added to every linear weight. */
  public static Path saveDamaged(Path reference, Path dir, double sigma) throws IOException {
    try (LlamaModel m = LlamaModel.load(reference)) {
      SplittableRandom random = new SplittableRandom(17);
      for (String module : m.linearLayerNames()) {
        float[] w = m.linearWeight(module);
        for (int i = 0; i < w.length; i++) {
          w[i] += (float) (random.nextGaussian() * sigma);
        }
        m.replaceLinearWeight(module, w);
      }
      return save(m, dir);
    }
  }
}
