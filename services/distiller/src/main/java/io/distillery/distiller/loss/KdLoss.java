package io.distillery.distiller.loss;

/**
 * Hinton knowledge-distillation loss on plain arrays (the reference the training graph is checked
 * against): {@code alpha * T^2 * KL(softmax(t/T) || softmax(s/T)) + (1-alpha) * CE(s, label)},
 * averaged over the tokens whose mask is true (answer tokens; prompt and padding are masked out).
 * With {@code reverse} the KL is {@code KL(softmax(s/T) || softmax(t/T))}.
 */
public final class KdLoss {

  private KdLoss() {}

  /** Log-softmax of {@code logits / temperature}, numerically stable. */
  public static double[] logSoftmax(float[] logits, double temperature) {
    double max = Double.NEGATIVE_INFINITY;
    for (float l : logits) {
      max = Math.max(max, l / temperature);
    }
    double sum = 0;
    for (float l : logits) {
      sum += Math.exp(l / temperature - max);
    }
    double log = max + Math.log(sum);
    double[] out = new double[logits.length];
    for (int i = 0; i < logits.length; i++) {
      out[i] = logits[i] / temperature - log;
    }
    return out;
  }

  /** KL(p || q) where p and q are given as log-probabilities. */
  public static double kl(double[] logP, double[] logQ) {
    double sum = 0;
    for (int i = 0; i < logP.length; i++) {
      sum += Math.exp(logP[i]) * (logP[i] - logQ[i]);
    }
    return sum;
  }

  /**
   * The loss averaged over masked-in tokens.
   *
   * @param student per token, the student's logits over the vocabulary
   * @param teacher per token, the teacher's logits
   * @param labels per token, the target id
   * @param mask per token, whether it counts
   */
  public static double loss(
      float[][] student,
      float[][] teacher,
      int[] labels,
      boolean[] mask,
      double temperature,
      double alpha,
      boolean reverse) {
    double total = 0;
    int count = 0;
    for (int t = 0; t < student.length; t++) {
      if (!mask[t]) {
        continue;
      }
      double[] s = logSoftmax(student[t], temperature);
      double[] te = logSoftmax(teacher[t], temperature);
      double kl = reverse ? kl(s, te) : kl(te, s);
      double ce = -logSoftmax(student[t], 1.0)[labels[t]];
      total += alpha * temperature * temperature * kl + (1 - alpha) * ce;
      count++;
    }
    if (count == 0) {
      throw new IllegalArgumentException("no token is masked in: the loss is undefined");
    }
    return total / count;
  }
}
