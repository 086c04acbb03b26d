package io.distillery.model.llama;

import ai.djl.ndarray.NDArray;

/**
 * Rewrites the input of a linear layer before the layer multiplies it: what simulating an
 * inference-time input quantizer needs (e.g. W8A8's static per-tensor INT8 activations, quantized
 * and dequantized in float). Observers ({@link LinearInputObserver}) still see the layer's input as
 * the model computed it.
 */
@FunctionalInterface
public interface LinearInputTransform {

  /**
   * @param module the transformers module name, e.g. {@code model.layers.0.mlp.down_proj}
   * @param input {@code [batch, seq, in_features]} float32, owned by the forward pass; do not
   *     modify it
   * @return the array the layer multiplies: {@code input} itself when unchanged, else a new array
   *     attached to {@code input}'s manager (so the forward pass frees it)
   */
  NDArray apply(String module, NDArray input);
}
