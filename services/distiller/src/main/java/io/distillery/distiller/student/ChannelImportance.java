package io.distillery.distiller.student;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import io.distillery.model.config.LlamaConfig;
import io.distillery.model.llama.LlamaModel;
import java.util.Arrays;
import java.util.List;

/**
 * Activation-based importance of the teacher's prunable units, measured on a few calibration
 * sequences (Minitron, Muralidharan et al., arXiv 2407.14679, section 2.2): a residual ("hidden")
 * dimension scores the mean |activation| of the normalised residual stream that every attention,
 * MLP and the LM head read; an MLP channel the mean |input| of its layer's down projection; a head
 * the L2 norm of its slice of the o-projection input (the head's output). {@link StudentInit} keeps
 * the highest-scoring units instead of the first ones.
 *
 * @param hidden score per residual dimension
 * @param heads score per layer and attention head
 * @param channels score per layer and MLP channel
 */
public record ChannelImportance(float[] hidden, float[][] heads, float[][] channels) {

  /**
   * Runs the teacher on {@code sequences} (token ids, one forward each) and accumulates the scores.
   */
  public static ChannelImportance measure(LlamaModel teacher, List<int[]> sequences) {
    if (sequences.isEmpty()) {
      throw new IllegalArgumentException("importance needs at least one calibration sequence");
    }
    LlamaConfig c = teacher.config();
    int layers = c.numHiddenLayers();
    float[] hidden = new float[c.hiddenSize()];
    float[][] headSquares = new float[layers][c.attentionWidth()];
    float[][] channels = new float[layers][c.intermediateSize()];
    try (LlamaModel.ObserverRegistration ignored =
        teacher.observeLinearInputs(
            (module, input) -> {
              String[] parts = module.split("\\.");
              if (module.endsWith("self_attn.q_proj")
                  || module.endsWith("mlp.gate_proj")
                  || module.equals("lm_head")) {
                add(hidden, input.abs().sum(new int[] {0, 1}));
              } else if (module.endsWith("self_attn.o_proj")) {
                add(headSquares[Integer.parseInt(parts[2])], input.square().sum(new int[] {0, 1}));
              } else if (module.endsWith("mlp.down_proj")) {
                add(channels[Integer.parseInt(parts[2])], input.abs().sum(new int[] {0, 1}));
              }
            })) {
      for (int[] sequence : sequences) {
        try (NDManager scope = teacher.manager().newSubManager()) {
          teacher.forward(scope, new int[][] {sequence});
        }
      }
    }
    int hd = c.headDim();
    float[][] heads = new float[layers][c.numAttentionHeads()];
    for (int l = 0; l < layers; l++) {
      for (int h = 0; h < heads[l].length; h++) {
        double sum = 0;
        for (int d = 0; d < hd; d++) {
          sum += headSquares[l][h * hd + d];
        }
        heads[l][h] = (float) Math.sqrt(sum);
      }
    }
    return new ChannelImportance(hidden, heads, channels);
  }

  private static void add(float[] into, NDArray sums) {
    try (sums) {
      float[] v = sums.toFloatArray();
      for (int i = 0; i < into.length; i++) {
        into[i] += v[i];
      }
    }
  }

  /** Indices of the {@code k} largest scores, in ascending index order (ties: the lower index). */
  public static int[] top(float[] scores, int k) {
    Integer[] order = new Integer[scores.length];
    for (int i = 0; i < order.length; i++) {
      order[i] = i;
    }
    Arrays.sort(
        order,
        (a, b) ->
            scores[a] != scores[b] ? Float.compare(scores[b], scores[a]) : Integer.compare(a, b));
    int[] out = new int[k];
    for (int i = 0; i < k; i++) {
      out[i] = order[i];
    }
    Arrays.sort(out);
    return out;
  }
}
