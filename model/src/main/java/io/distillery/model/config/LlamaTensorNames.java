package io.distillery.model.config;

import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
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
                shapes.put(weight(module), new long[] {projection.outFeatures(config), projection.inFeatures(config)});
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
}
