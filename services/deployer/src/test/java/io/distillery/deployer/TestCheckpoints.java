package io.distillery.deployer;

import io.distillery.model.config.LlamaConfig;
import io.distillery.model.config.LlamaTensorNames;
import io.distillery.model.quant.CompressedTensors;
import io.distillery.model.quant.GroupQuantizer;
import io.distillery.model.quant.QuantizationScheme;
import io.distillery.model.quant.QuantizedWeight;
import io.distillery.model.safetensors.Checkpoint;
import io.distillery.model.safetensors.SafetensorsWriter;
import io.distillery.model.safetensors.TensorData;
import io.distillery.model.tokenizer.ByteTokenizer;
import java.io.IOException;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;

/**
 * Tiny Llama checkpoints written in plain Java (no native engine): dense F32, or compressed-tensors
 * W4 group 32.
 */
public final class TestCheckpoints {

  public static final LlamaConfig CONFIG =
      LlamaConfig.builder()
          .vocabSize(ByteTokenizer.VOCAB_SIZE)
          .hiddenSize(64)
          .intermediateSize(128)
          .numHiddenLayers(1)
          .numAttentionHeads(4)
          .numKeyValueHeads(2)
          .maxPositionEmbeddings(128)
          .build();

  private TestCheckpoints() {}

  static Map<String, float[]> tensors(long seed) {
    return tensors(seed, CONFIG);
  }

  /** A dense F32 checkpoint, with the byte tokenizer when {@code tokenizer}. */
  public static Path dense(Path dir, long seed, boolean tokenizer) throws IOException {
    Map<String, TensorData> data = new LinkedHashMap<>();
    Map<String, long[]> shapes = LlamaTensorNames.shapes(CONFIG);
    tensors(seed).forEach((k, v) -> data.put(k, TensorData.ofFloats(shapes.get(k), v)));
    java.nio.file.Files.createDirectories(dir);
    SafetensorsWriter.write(dir.resolve(Checkpoint.SINGLE_FILE), data, Map.of("format", "pt"));
    CONFIG.write(dir);
    if (tokenizer) {
      ByteTokenizer.instance().save(dir);
    }
    return dir;
  }

  /**
   * A compressed-tensors pack-quantized (W4A16, group 32, asymmetric) checkpoint, as w4-gptq with
   * symmetric: false.
   */
  public static Path w4(Path dir, long seed) throws IOException {
    return quantized(
        dir,
        seed,
        new QuantizationScheme(QuantizedWeight.Kind.INT4_GROUP, 32, false, List.of("lm_head")));
  }

  /**
   * A compressed-tensors checkpoint of {@code scheme} with every linear layer but lm_head quantized
   * as the quantizer does (W8A8 with a static input scale per layer), in {@link #CONFIG}'s shapes.
   */
  public static Path quantized(Path dir, long seed, QuantizationScheme scheme) throws IOException {
    return quantized(dir, seed, scheme, CONFIG);
  }

  /** As {@link #quantized(Path, long, QuantizationScheme)} for another config. */
  public static Path quantized(Path dir, long seed, QuantizationScheme scheme, LlamaConfig config)
      throws IOException {
    return quantized(dir, tensors(seed, config), scheme, config);
  }

  private static Path quantized(
      Path dir, Map<String, float[]> t, QuantizationScheme scheme, LlamaConfig config)
      throws IOException {
    Map<String, QuantizedWeight> q = new LinkedHashMap<>();
    Map<String, Float> inputScales = new LinkedHashMap<>();
    Map<String, long[]> shapes = LlamaTensorNames.shapes(config);
    for (String m : LlamaTensorNames.linearModules(config)) {
      if (m.equals(LlamaTensorNames.LM_HEAD_MODULE)) {
        continue;
      }
      long[] s = shapes.get(LlamaTensorNames.weight(m));
      float[] w = t.get(LlamaTensorNames.weight(m));
      q.put(
          m,
          switch (scheme.kind()) {
            case INT4_GROUP ->
                GroupQuantizer.int4Group(
                    w, (int) s[0], (int) s[1], scheme.groupSize(), scheme.symmetric());
            case INT8_CHANNEL -> GroupQuantizer.int8PerChannel(w, (int) s[0], (int) s[1]);
            case FP8_CHANNEL -> GroupQuantizer.fp8PerChannel(w, (int) s[0], (int) s[1]);
          });
      if (scheme.staticInputActivations()) {
        inputScales.put(m, 0.02f);
      }
    }
    CompressedTensors.write(dir, config, t, q, inputScales, scheme);
    return dir;
  }

  /**
   * A 2:4-pruned checkpoint as the pruner writes it (every linear but lm_head keeps the two largest
   * of each 4 consecutive inputs; compressed-tensors' dense {@code sparsity_config}), dense F32
   * when {@code scheme} is null, else quantized with {@code scheme} (which then carries the
   * sparsity_config).
   */
  public static Path twoFour(Path dir, long seed, QuantizationScheme scheme) throws IOException {
    Map<String, float[]> t = tensors(seed, CONFIG);
    List<String> targets = new java.util.ArrayList<>();
    for (String m : LlamaTensorNames.linearModules(CONFIG)) {
      if (m.equals(LlamaTensorNames.LM_HEAD_MODULE)) {
        continue;
      }
      targets.add(m);
      float[] w = t.get(LlamaTensorNames.weight(m));
      for (int g = 0; g < w.length; g += 4) {
        for (int drop = 0; drop < 2; drop++) {
          int smallest = -1;
          for (int i = g; i < g + 4; i++) {
            if (w[i] != 0 && (smallest < 0 || Math.abs(w[i]) < Math.abs(w[smallest]))) {
              smallest = i;
            }
          }
          w[smallest] = 0;
        }
      }
    }
    QuantizationScheme.Sparsity sparsity = new QuantizationScheme.Sparsity("2:4", targets, 0.5);
    if (scheme != null) {
      return quantized(dir, t, scheme.withSparsity(sparsity), CONFIG);
    }
    Map<String, TensorData> data = new LinkedHashMap<>();
    Map<String, long[]> shapes = LlamaTensorNames.shapes(CONFIG);
    t.forEach((k, v) -> data.put(k, TensorData.ofFloats(shapes.get(k), v)));
    java.nio.file.Files.createDirectories(dir);
    SafetensorsWriter.write(dir.resolve(Checkpoint.SINGLE_FILE), data, Map.of("format", "pt"));
    CompressedTensors.writeSparseConfig(dir, CONFIG, sparsity);
    return dir;
  }

  static Map<String, float[]> tensors(long seed, LlamaConfig config) {
    Random r = new Random(seed);
    Map<String, float[]> t = new LinkedHashMap<>();
    for (Map.Entry<String, long[]> e : LlamaTensorNames.shapes(config).entrySet()) {
      long n = 1;
      for (long d : e.getValue()) {
        n *= d;
      }
      float[] v = new float[Math.toIntExact(n)];
      for (int i = 0; i < v.length; i++) {
        v[i] = (float) (r.nextGaussian() * 0.05);
      }
      t.put(e.getKey(), v);
    }
    return t;
  }
}
