package io.distillery.model.calib;

/**
 * Calibration statistics of one linear layer's input channels, accumulated over {@code tokens}
 * calibration tokens. Sums, not means, so that statistics of several batches (or workers) add up
 * exactly.
 *
 * @param module transformers module name, e.g. {@code model.layers.0.mlp.down_proj}
 * @param inFeatures input width {@code n}
 * @param tokens number of token rows observed
 * @param absMax per channel max |x| (SmoothQuant's activation scale, FP8/INT8 static scales)
 * @param sumAbs per channel sum |x| (AWQ's mean activation magnitude = sumAbs / tokens)
 * @param sumSq per channel sum x^2 (Wanda's ||X_j||_2 = sqrt(sumSq))
 * @param gram X^T X, {@code n x n} row-major, or null when not collected (GPTQ/SparseGPT H = 2 X^T
 *     X / tokens)
 * @param histogram counts of |x| over all channels in {@code histogram.length} equal bins on [0,
 *     histMax] (entropy calibration); values above histMax fall into the last bin
 * @param histMax upper edge of the histogram
 */
public record LayerStats(
    String module,
    int inFeatures,
    long tokens,
    float[] absMax,
    float[] sumAbs,
    float[] sumSq,
    double[] gram,
    long[] histogram,
    float histMax) {

  public LayerStats {
    if (absMax.length != inFeatures || sumAbs.length != inFeatures || sumSq.length != inFeatures) {
      throw new IllegalArgumentException(
          module + ": channel statistics must have " + inFeatures + " entries");
    }
    if (gram != null && gram.length != (long) inFeatures * inFeatures) {
      throw new IllegalArgumentException(
          module + ": gram must be " + inFeatures + "x" + inFeatures);
    }
  }

  /** Mean |x| per channel. */
  public float[] meanAbs() {
    float[] out = new float[inFeatures];
    for (int j = 0; j < inFeatures; j++) {
      out[j] = tokens == 0 ? 0 : (float) (sumAbs[j] / tokens);
    }
    return out;
  }

  /** L2 norm of each channel over all calibration tokens. */
  public float[] l2Norm() {
    float[] out = new float[inFeatures];
    for (int j = 0; j < inFeatures; j++) {
      out[j] = (float) Math.sqrt(sumSq[j]);
    }
    return out;
  }

  /** GPTQ's Hessian H = 2 X^T X / tokens (arXiv 2210.17323, eq. 1 ff.), {@code n x n} row-major. */
  public double[] hessian() {
    if (gram == null) {
      throw new IllegalStateException(
          module + ": the calibration did not collect X^T X (hessian=false)");
    }
    double[] h = new double[gram.length];
    double s = tokens == 0 ? 0 : 2.0 / tokens;
    for (int i = 0; i < h.length; i++) {
      h[i] = gram[i] * s;
    }
    return h;
  }
}
