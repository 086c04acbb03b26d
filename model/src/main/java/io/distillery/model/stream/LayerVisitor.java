package io.distillery.model.stream;

import ai.djl.ndarray.NDArray;
import java.io.IOException;

/**
 * What a stage does to each decoder layer the {@link LayerStreamer} holds: observe the inputs of
 * its linear modules while the calibration batch passes through the original layer, then rewrite
 * the layer. Called for layers in order, on the streamer's thread.
 */
public interface LayerVisitor {

  /**
   * Whether the layer's linear inputs are needed; when no visitor needs them and nothing is
   * sequential, no forward runs.
   */
  boolean observes();

  /**
   * One batch's input of a linear module of the layer, {@code [batch, seq, in_features]}, valid
   * during the call only. Modules reading the same tensor (q/k/v, gate/up) are handed the identical
   * NDArray.
   */
  default void observe(int layer, String module, NDArray input) {}

  /** Called after each batch of the observe pass. */
  default void endOfBatch(int layer) {}

  /**
   * The array a linear module of the rewritten layer multiplies in the sequential re-run, in place
   * of {@code input}: e.g. W8A8's static INT8 input quantization simulated, so that the next layer
   * is calibrated on what the deployed layer computes. By default the input itself. A new array
   * must be attached to {@code input}'s manager (the pass frees it), as {@link
   * io.distillery.model.llama.LinearInputTransform} returns it.
   *
   * @param input {@code [batch, seq, in_features]}, owned by the pass; do not modify it
   */
  default NDArray rerunInput(int layer, String module, NDArray input) {
    return input;
  }

  /**
   * Rewrites the layer after its inputs were observed: change weights, {@link LayerWeights#emit}
   * stored forms.
   *
   * @param step reports the sub-step being worked on ("gptq mlp.down_proj"), for progress
   */
  void rewrite(LayerWeights weights, StepListener step) throws IOException;

  /** Names the sub-step a rewrite is on. */
  @FunctionalInterface
  interface StepListener {
    void step(String what, double fractionOfLayer);
  }
}
