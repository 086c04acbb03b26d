package io.distillery.model.llama;

import io.distillery.model.config.LlamaConfig;
import io.distillery.model.config.RopeScaling;

/**
 * Rotary position embedding tables (Su et al., RoFormer, arXiv 2104.09864, eq. 34) in the Hugging
 * Face "rotate_half" layout: for head dimension d and pair i < d/2, {@code inv_freq_i =
 * theta^(-2i/d)}; position p rotates dimensions i and i + d/2 by angle {@code p * inv_freq_i}, so
 * {@code cos} and {@code sin} rows are {@code cat(freqs, freqs)}.
 *
 * <p>Arithmetic mirrors transformers' float32 computation ({@code inv_freq} and {@code p *
 * inv_freq} rounded to float) so that long-context angles match HF, not a more precise but
 * different double computation.
 */
final class RotaryEmbedding {

  private final int headDim;
  private final double theta;
  private final float[] invFreq;
  private final RopeScaling scaling;
  private final int originalMaxPositions;

  RotaryEmbedding(LlamaConfig config) {
    this.headDim = config.headDim();
    this.theta = config.ropeTheta();
    this.scaling = config.ropeScaling();
    this.originalMaxPositions =
        scaling != null && scaling.originalMaxPositionEmbeddings() > 0
            ? scaling.originalMaxPositionEmbeddings()
            : config.maxPositionEmbeddings();
    this.invFreq = scaledInvFreq(unscaledInvFreq(theta, headDim), scaling);
  }

  /** {@code 1 / theta^(2i/d)} as torch computes it in float32. */
  static float[] unscaledInvFreq(double theta, int headDim) {
    float[] inv = new float[headDim / 2];
    for (int i = 0; i < inv.length; i++) {
      float exponent = (float) (2 * i) / (float) headDim;
      inv[i] = 1.0f / (float) Math.pow(theta, exponent);
    }
    return inv;
  }

  /**
   * Static frequency scaling: linear divides every frequency by the factor (equivalent to dividing
   * positions); llama3 (transformers {@code _compute_llama3_parameters}) divides low frequencies
   * (wavelength above original/low_freq_factor) by the factor, keeps high frequencies (wavelength
   * below original/high_freq_factor), and blends linearly in between.
   */
  static float[] scaledInvFreq(float[] inv, RopeScaling scaling) {
    if (scaling == null || scaling.type() == RopeScaling.Type.DYNAMIC) {
      return inv;
    }
    float[] out = new float[inv.length];
    double factor = scaling.factor();
    if (scaling.type() == RopeScaling.Type.LINEAR) {
      for (int i = 0; i < inv.length; i++) {
        out[i] = (float) (inv[i] / factor);
      }
      return out;
    }
    double original = scaling.originalMaxPositionEmbeddings();
    double low = scaling.lowFreqFactor();
    double high = scaling.highFreqFactor();
    double lowFreqWavelen = original / low;
    double highFreqWavelen = original / high;
    for (int i = 0; i < inv.length; i++) {
      double wavelen = 2 * Math.PI / inv[i];
      double value;
      if (wavelen > lowFreqWavelen) {
        value = inv[i] / factor;
      } else if (wavelen < highFreqWavelen) {
        value = inv[i];
      } else {
        double smooth = (original / wavelen - low) / (high - low);
        value = (1 - smooth) * inv[i] / factor + smooth * inv[i];
      }
      out[i] = (float) value;
    }
    return out;
  }

  /**
   * Dynamic NTK scaling (transformers {@code _compute_dynamic_ntk_parameters}): past the trained
   * length L, the base grows to {@code theta * (factor * n / L - (factor - 1))^(d / (d - 2))} for a
   * sequence of n positions; within L the frequencies are unchanged.
   */
  private float[] invFreqFor(int sequenceLength) {
    if (scaling == null
        || scaling.type() != RopeScaling.Type.DYNAMIC
        || sequenceLength <= originalMaxPositions) {
      return invFreq;
    }
    double factor = scaling.factor();
    double base =
        theta
            * Math.pow(
                factor * sequenceLength / originalMaxPositions - (factor - 1),
                (double) headDim / (headDim - 2));
    return unscaledInvFreq(base, headDim);
  }

  /** The unscaled-or-scaled frequencies used at positions below the trained length. */
  float[] invFreq() {
    return invFreq.clone();
  }

  /**
   * Cos and sin tables for positions {@code start .. start+length-1}, each {@code [length,
   * headDim]} row-major.
   */
  float[][] tables(int start, int length) {
    float[] inv = invFreqFor(start + length);
    int half = headDim / 2;
    float[] cos = new float[length * headDim];
    float[] sin = new float[length * headDim];
    for (int p = 0; p < length; p++) {
      float position = start + p;
      int row = p * headDim;
      for (int i = 0; i < half; i++) {
        float angle = position * inv[i];
        float c = (float) Math.cos(angle);
        float s = (float) Math.sin(angle);
        cos[row + i] = c;
        cos[row + half + i] = c;
        sin[row + i] = s;
        sin[row + half + i] = s;
      }
    }
    return new float[][] {cos, sin};
  }
}
