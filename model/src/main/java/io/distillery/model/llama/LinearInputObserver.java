package io.distillery.model.llama;

import ai.djl.ndarray.NDArray;

/**
 * Sees the input of every linear layer during a forward pass: what calibration (SmoothQuant
 * activation maxima, AWQ channel means, GPTQ/SparseGPT Hessians, Wanda norms) needs.
 */
@FunctionalInterface
public interface LinearInputObserver {

  /**
   * Called before the layer runs. Layers sharing an input (q/k/v, gate/up) are each reported.
   *
   * @param module the transformers module name, e.g. {@code model.layers.0.self_attn.q_proj} or
   *     {@code lm_head}
   * @param input {@code [batch, seq, in_features]} float32; owned by the forward pass and closed
   *     when it returns, so copy what you keep (e.g. {@code input.toFloatArray()}) and do not
   *     modify it
   */
  void onLinearInput(String module, NDArray input);
}
