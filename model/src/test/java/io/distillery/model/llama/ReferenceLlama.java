package io.distillery.model.llama;

import io.distillery.model.config.LlamaConfig;
import io.distillery.model.config.LlamaTensorNames;
import io.distillery.model.config.Projection;
import io.distillery.model.safetensors.Checkpoint;
import java.io.IOException;
import java.util.HashMap;
import java.util.Map;

/**
 * The Llama forward pass written out in plain loops over float[] with double accumulators: slow,
 * easy to check against the transformers source, independent of DJL and of production code (only
 * the config and tensor names are shared). RoPE angles are computed here in double precision.
 */
final class ReferenceLlama {

  private final LlamaConfig config;
  private final Map<String, float[]> weights = new HashMap<>();

  ReferenceLlama(LlamaConfig config, Checkpoint checkpoint) throws IOException {
    this.config = config;
    for (String name : LlamaTensorNames.shapes(config).keySet()) {
      weights.put(name, checkpoint.floats(name));
    }
  }

  void setWeight(String name, float[] values) {
    weights.put(name, values.clone());
  }

  /** Logits {@code [seq][vocab]} for one sequence. */
  double[][] forward(int[] tokens) {
    int seq = tokens.length;
    int hidden = config.hiddenSize();
    double[][] h = new double[seq][hidden];
    float[] embed = weights.get(LlamaTensorNames.EMBED_TOKENS);
    for (int s = 0; s < seq; s++) {
      for (int d = 0; d < hidden; d++) {
        h[s][d] = embed[tokens[s] * hidden + d];
      }
    }
    for (int layer = 0; layer < config.numHiddenLayers(); layer++) {
      double[][] x = rmsNorm(h, weights.get(LlamaTensorNames.inputLayernorm(layer)));
      double[][] q = linear(x, layer, Projection.Q);
      double[][] k = linear(x, layer, Projection.K);
      double[][] v = linear(x, layer, Projection.V);
      rope(q, config.numAttentionHeads());
      rope(k, config.numKeyValueHeads());
      double[][] attention = attention(q, k, v);
      double[][] o = linear(attention, layer, Projection.O);
      add(h, o);
      double[][] n = rmsNorm(h, weights.get(LlamaTensorNames.postAttentionLayernorm(layer)));
      double[][] gate = linear(n, layer, Projection.GATE);
      double[][] up = linear(n, layer, Projection.UP);
      for (int s = 0; s < seq; s++) {
        for (int j = 0; j < gate[s].length; j++) {
          double g = gate[s][j];
          gate[s][j] = g / (1 + Math.exp(-g)) * up[s][j];
        }
      }
      add(h, linear(gate, layer, Projection.DOWN));
    }
    double[][] last = rmsNorm(h, weights.get(LlamaTensorNames.FINAL_NORM));
    float[] head =
        weights.get(
            config.tieWordEmbeddings() ? LlamaTensorNames.EMBED_TOKENS : LlamaTensorNames.LM_HEAD);
    return matmulTransposed(last, head, config.vocabSize(), null);
  }

  private double[][] rmsNorm(double[][] x, float[] weight) {
    double[][] out = new double[x.length][];
    for (int s = 0; s < x.length; s++) {
      double sumSquares = 0;
      for (double value : x[s]) {
        sumSquares += value * value;
      }
      double scale = 1 / Math.sqrt(sumSquares / x[s].length + config.rmsNormEps());
      out[s] = new double[x[s].length];
      for (int d = 0; d < x[s].length; d++) {
        out[s][d] = x[s][d] * scale * weight[d];
      }
    }
    return out;
  }

  private double[][] linear(double[][] x, int layer, Projection projection) {
    String module = projection.module(layer);
    float[] bias = projection.hasBias(config) ? weights.get(LlamaTensorNames.bias(module)) : null;
    return matmulTransposed(
        x, weights.get(LlamaTensorNames.weight(module)), projection.outFeatures(config), bias);
  }

  /** y = x W^T + b with W stored [out, in] as HF does. */
  private static double[][] matmulTransposed(double[][] x, float[] w, int out, float[] bias) {
    int in = x[0].length;
    double[][] y = new double[x.length][out];
    for (int s = 0; s < x.length; s++) {
      for (int o = 0; o < out; o++) {
        double sum = bias == null ? 0 : bias[o];
        for (int i = 0; i < in; i++) {
          sum += x[s][i] * w[o * in + i];
        }
        y[s][o] = sum;
      }
    }
    return y;
  }

  /** Rotate pairs (i, i + d/2) of every head by position * theta^(-2i/d). */
  private void rope(double[][] x, int heads) {
    int d = config.headDim();
    int half = d / 2;
    for (int s = 0; s < x.length; s++) {
      for (int head = 0; head < heads; head++) {
        int base = head * d;
        for (int i = 0; i < half; i++) {
          double angle = s * Math.pow(config.ropeTheta(), -2.0 * i / d);
          double a = x[s][base + i];
          double b = x[s][base + half + i];
          x[s][base + i] = a * Math.cos(angle) - b * Math.sin(angle);
          x[s][base + half + i] = b * Math.cos(angle) + a * Math.sin(angle);
        }
      }
    }
  }

  private double[][] attention(double[][] q, double[][] k, double[][] v) {
    int seq = q.length;
    int d = config.headDim();
    int heads = config.numAttentionHeads();
    int groups = heads / config.numKeyValueHeads();
    Integer window = config.slidingWindow();
    double[][] out = new double[seq][heads * d];
    for (int head = 0; head < heads; head++) {
      int kvHead = head / groups;
      for (int s = 0; s < seq; s++) {
        double[] scores = new double[seq];
        double max = Double.NEGATIVE_INFINITY;
        for (int t = 0; t <= s; t++) {
          if (window != null && s - t >= window) {
            scores[t] = Double.NEGATIVE_INFINITY;
            continue;
          }
          double dot = 0;
          for (int i = 0; i < d; i++) {
            dot += q[s][head * d + i] * k[t][kvHead * d + i];
          }
          scores[t] = dot / Math.sqrt(d);
          max = Math.max(max, scores[t]);
        }
        double total = 0;
        for (int t = 0; t <= s; t++) {
          scores[t] = Math.exp(scores[t] - max);
          total += scores[t];
        }
        for (int t = 0; t <= s; t++) {
          double p = scores[t] / total;
          for (int i = 0; i < d; i++) {
            out[s][head * d + i] += p * v[t][kvHead * d + i];
          }
        }
      }
    }
    return out;
  }

  private static void add(double[][] h, double[][] delta) {
    for (int s = 0; s < h.length; s++) {
      for (int d = 0; d < h[s].length; d++) {
        h[s][d] += delta[s][d];
      }
    }
  }
}
