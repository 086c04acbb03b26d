package io.distillery.model.config;

import io.distillery.model.CorruptCheckpointException;
import io.distillery.model.safetensors.Checkpoint;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.SequencedMap;

/**
 * Tensor names of the Hugging Face Llama layout ({@code LlamaForCausalLM.state_dict()}), the one
 * place they are spelled. Mistral and Qwen2 use the same names; Qwen2 adds {@code .bias} tensors on
 * q/k/v. {@code lm_head.weight} is absent when the embeddings are tied.
 */
public final class LlamaTensorNames {

  public static final String EMBED_TOKENS = "model.embed_tokens.weight";
  public static final String FINAL_NORM = "model.norm.weight";
  public static final String LM_HEAD_MODULE = "lm_head";
  public static final String LM_HEAD = "lm_head.weight";

  private LlamaTensorNames() {}

  /** {@code model.layers.{i}.} */
  public static String layerPrefix(int layer) {
    if (layer < 0) {
      throw new IllegalArgumentException("negative layer " + layer);
    }
    return "model.layers." + layer + ".";
  }

  public static String inputLayernorm(int layer) {
    return layerPrefix(layer) + "input_layernorm.weight";
  }

  public static String postAttentionLayernorm(int layer) {
    return layerPrefix(layer) + "post_attention_layernorm.weight";
  }

  /** The weight of a module: {@code module + ".weight"}. */
  public static String weight(String module) {
    return module + ".weight";
  }

  /** The bias of a module: {@code module + ".bias"}. */
  public static String bias(String module) {
    return module + ".bias";
  }

  /**
   * Every linear module in forward order: per layer q, k, v, o, gate, up, down; then {@code
   * lm_head} (present as a module even when its weight is tied to the embeddings).
   */
  public static List<String> linearModules(LlamaConfig config) {
    List<String> modules = new ArrayList<>();
    for (int layer = 0; layer < config.numHiddenLayers(); layer++) {
      for (Projection projection : Projection.values()) {
        modules.add(projection.module(layer));
      }
    }
    modules.add(LM_HEAD_MODULE);
    return Collections.unmodifiableList(modules);
  }

  /**
   * Every tensor a checkpoint of {@code config} holds, with its shape, in {@code state_dict()}
   * order: embeddings, per layer (input norm, q/k/v/o with biases, gate/up/down, post-attention
   * norm in HF's module order), final norm, and the LM head unless tied.
   */
  public static SequencedMap<String, long[]> shapes(LlamaConfig config) {
    SequencedMap<String, long[]> shapes = new LinkedHashMap<>();
    long hidden = config.hiddenSize();
    shapes.put(EMBED_TOKENS, new long[] {config.vocabSize(), hidden});
    for (int layer = 0; layer < config.numHiddenLayers(); layer++) {
      for (Projection projection : Projection.values()) {
        String module = projection.module(layer);
        shapes.put(
            weight(module),
            new long[] {projection.outFeatures(config), projection.inFeatures(config)});
        if (projection.hasBias(config)) {
          shapes.put(bias(module), new long[] {projection.outFeatures(config)});
        }
      }
      shapes.put(inputLayernorm(layer), new long[] {hidden});
      shapes.put(postAttentionLayernorm(layer), new long[] {hidden});
    }
    shapes.put(FINAL_NORM, new long[] {hidden});
    if (!config.tieWordEmbeddings()) {
      shapes.put(LM_HEAD, new long[] {config.vocabSize(), hidden});
    }
    return Collections.unmodifiableSequencedMap(shapes);
  }

  /**
   * How many parameters the model of {@code config} has: all elements of every tensor of {@link
   * #shapes}.
   */
  public static long parameterCount(LlamaConfig config) {
    long elements = 0;
    for (long[] shape : shapes(config).values()) {
      long n = 1;
      for (long d : shape) {
        n = Math.multiplyExact(n, d);
      }
      elements = Math.addExact(elements, n);
    }
    return elements;
  }

  /**
   * Checks, from the headers alone and before any weight is read, that {@code checkpoint} holds
   * every tensor {@code config} needs with the shape config.json implies. Extra tensors (old {@code
   * rotary_emb.inv_freq} buffers, a tied model's {@code lm_head.weight}) are allowed.
   *
   * @throws CorruptCheckpointException naming the first tensor that is missing, or whose shape
   *     disagrees, with its shape, the expected one and the config.json keys the disagreeing
   *     dimensions come from
   */
  public static void validate(Checkpoint checkpoint, LlamaConfig config)
      throws CorruptCheckpointException {
    Map<String, String[]> keys = configKeys(config);
    for (Map.Entry<String, long[]> expected : shapes(config).entrySet()) {
      String name = expected.getKey();
      if (!checkpoint.contains(name)) {
        throw new CorruptCheckpointException(
            checkpoint.directory(),
            "checkpoint has no tensor '"
                + name
                + "', which config.json ("
                + config.numHiddenLayers()
                + " layers, tie_word_embeddings "
                + config.tieWordEmbeddings()
                + ") needs");
      }
      long[] actual = checkpoint.info(name).shape();
      long[] want = expected.getValue();
      if (Arrays.equals(actual, want)) {
        continue;
      }
      String[] from = keys.get(name);
      List<String> culprits = new ArrayList<>();
      for (int d = 0; d < want.length; d++) {
        if (actual.length != want.length || actual[d] != want[d]) {
          culprits.add(from[d]);
        }
      }
      throw new CorruptCheckpointException(
          checkpoint.directory(),
          "tensor '"
              + name
              + "' has shape "
              + Arrays.toString(actual)
              + " but config.json implies "
              + Arrays.toString(want)
              + " (from "
              + String.join(", ", culprits)
              + ")");
    }
  }

  /**
   * For each tensor of {@link #shapes}, the config.json key (with its value) each dimension comes
   * from.
   */
  private static Map<String, String[]> configKeys(LlamaConfig c) {
    String vocab = "vocab_size " + c.vocabSize();
    String hidden = "hidden_size " + c.hiddenSize();
    Map<String, String[]> keys = new HashMap<>();
    keys.put(EMBED_TOKENS, new String[] {vocab, hidden});
    keys.put(LM_HEAD, new String[] {vocab, hidden});
    keys.put(FINAL_NORM, new String[] {hidden});
    for (int layer = 0; layer < c.numHiddenLayers(); layer++) {
      for (Projection p : Projection.values()) {
        String out = key(p, c, true);
        keys.put(weight(p.module(layer)), new String[] {out, key(p, c, false)});
        keys.put(bias(p.module(layer)), new String[] {out});
      }
      keys.put(inputLayernorm(layer), new String[] {hidden});
      keys.put(postAttentionLayernorm(layer), new String[] {hidden});
    }
    return keys;
  }

  private static String key(Projection p, LlamaConfig c, boolean out) {
    String heads = "num_attention_heads " + c.numAttentionHeads() + " x head_dim " + c.headDim();
    String kvHeads = "num_key_value_heads " + c.numKeyValueHeads() + " x head_dim " + c.headDim();
    String hidden = "hidden_size " + c.hiddenSize();
    String intermediate = "intermediate_size " + c.intermediateSize();
    return switch (p) {
      case Q -> out ? heads : hidden;
      case K, V -> out ? kvHeads : hidden;
      case O -> out ? hidden : heads;
      case GATE, UP -> out ? intermediate : hidden;
      case DOWN -> out ? hidden : intermediate;
    };
  }
}
