package io.distillery.model.config;

/**
 * The seven linear layers of a Llama decoder block, named as transformers names the modules. HF
 * {@code nn.Linear} weights are stored {@code [out_features, in_features]}.
 */
public enum Projection {
  Q("self_attn.q_proj"),
  K("self_attn.k_proj"),
  V("self_attn.v_proj"),
  O("self_attn.o_proj"),
  GATE("mlp.gate_proj"),
  UP("mlp.up_proj"),
  DOWN("mlp.down_proj");

  private final String suffix;

  Projection(String suffix) {
    this.suffix = suffix;
  }

  /** The module name in layer {@code layer}, e.g. {@code model.layers.3.self_attn.q_proj}. */
  public String module(int layer) {
    return LlamaTensorNames.layerPrefix(layer) + suffix;
  }

  /** Output features for {@code config}. */
  public int outFeatures(LlamaConfig config) {
    return switch (this) {
      case Q -> config.attentionWidth();
      case K, V -> config.keyValueWidth();
      case O, DOWN -> config.hiddenSize();
      case GATE, UP -> config.intermediateSize();
    };
  }

  /** Input features for {@code config}. */
  public int inFeatures(LlamaConfig config) {
    return switch (this) {
      case Q, K, V, GATE, UP -> config.hiddenSize();
      case O -> config.attentionWidth();
      case DOWN -> config.intermediateSize();
    };
  }

  /**
   * Whether this projection has a bias under {@code config} (Qwen2 q/k/v; Llama attention_bias).
   */
  public boolean hasBias(LlamaConfig config) {
    return switch (this) {
      case Q, K, V -> config.attentionBias();
      case O -> config.outputProjectionBias();
      case GATE, UP, DOWN -> false;
    };
  }
}
