package io.distillery.model.config;

import java.util.Arrays;
import java.util.List;

/**
 * Decoder-only architectures that share the Llama block (RMSNorm, RoPE, grouped-query attention,
 * SwiGLU) and differ only in details this platform handles: Qwen2 adds q/k/v biases, Mistral may
 * use a sliding attention window.
 */
public enum Architecture {
  LLAMA("LlamaForCausalLM", "llama"),
  MISTRAL("MistralForCausalLM", "mistral"),
  QWEN2("Qwen2ForCausalLM", "qwen2");

  private final String className;
  private final String modelType;

  Architecture(String className, String modelType) {
    this.className = className;
    this.modelType = modelType;
  }

  /** The transformers class in {@code "architectures"}, e.g. {@code LlamaForCausalLM}. */
  public String className() {
    return className;
  }

  /** The {@code "model_type"} value, e.g. {@code llama}. */
  public String modelType() {
    return modelType;
  }

  /** The architecture with this transformers class name, or {@code null}. */
  public static Architecture fromClassName(String name) {
    return Arrays.stream(values()).filter(a -> a.className.equals(name)).findFirst().orElse(null);
  }

  /** The architecture with this {@code model_type}, or {@code null}. */
  public static Architecture fromModelType(String type) {
    return Arrays.stream(values()).filter(a -> a.modelType.equals(type)).findFirst().orElse(null);
  }

  /** Every supported class name, for error messages. */
  public static List<String> classNames() {
    return Arrays.stream(values()).map(Architecture::className).toList();
  }
}
