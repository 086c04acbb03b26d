package io.distillery.distiller.loss;

import io.distillery.distiller.teacher.TopKLogits;

/**
 * Hinton knowledge-distillation loss on plain arrays (the reference the training graph is checked
 * against): {@code alpha * T^2 * KL(softmax(t/T) || softmax(s/T)) + (1-alpha) * CE(s, label)},
 * averaged over the tokens whose mask is true (answer tokens; prompt and padding are masked out).
 * With {@code reverse} the KL is {@code KL(softmax(s/T) || softmax(t/T))}.
 *
 * <p>{@link #topKLoss} is the same loss against the teacher's cached top-k ({@link TopKLogits}),
 * defined on the buckets B = K + {rest}, where K are the teacher's k most likely ids at the
 * position and "rest" is every other id (no rest bucket when K is the whole vocabulary):
 *
 * <ul>
 *   <li>teacher: l_b = log p_teacher(b) at T = 1 (for rest: the log of its summed mass, as cached);
 *       P_b = exp(l_b / T) / sum_b' exp(l_b' / T);
 *   <li>student: m = log_softmax(s); mu_i = m_i for i in K, mu_rest = log sum_{v not in K}
 *       exp(m_v); Q_b = exp(mu_b / T) / sum_b' exp(mu_b' / T);
 *   <li>loss per token: alpha * T^2 * KL(P || Q) + (1 - alpha) * CE(s, label) (reverse: KL(Q ||
 *       P)).
 * </ul>
 *
 * Why this definition: on K, P is exactly the teacher's softmax(z/T) restricted to K and
 * renormalised together with one "rest" bucket (the log-sum-exp of z cancels, so T-independent
 * log-probs at T = 1 suffice and the cache serves every temperature); with k = vocab it is Hinton's
 * loss exactly (arXiv 1503.02531). KL over the merged buckets is a lower bound of the full KL (the
 * data-processing inequality) that is zero exactly when the student matches the teacher on every
 * kept token and on the total mass of the others, so, unlike renormalising over K alone with zero
 * probability elsewhere (the form the sparse-logit KD papers, e.g. Anshumann et al., arXiv
 * 2503.16870, show to bias the student towards over-confidence), it does not push the student's
 * tail mass to zero. The temperature of the rest bucket treats it as one token of its mass: exact
 * at T = 1 and for k = vocab, an approximation otherwise (the teacher's tail at other T is not
 * cached).
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

  /** KL(p || q) where p and q are given as log-probabilities; terms with p = 0 add nothing. */
  public static double kl(double[] logP, double[] logQ) {
    double sum = 0;
    for (int i = 0; i < logP.length; i++) {
      if (logP[i] == Double.NEGATIVE_INFINITY) {
        continue;
      }
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

  /**
   * The loss against cached top-k teacher distributions, averaged over the tokens with a position.
   *
   * @param student per token, the student's logits over the vocabulary
   * @param teacher the cached top-k distributions
   * @param positions per token, its position in {@code teacher}, or -1 when it does not count
   * @param labels per token, the target id
   */
  public static double topKLoss(
      float[][] student,
      TopKLogits teacher,
      int[] positions,
      int[] labels,
      double temperature,
      double alpha,
      boolean reverse) {
    int k = teacher.k();
    boolean rest = !teacher.complete();
    double total = 0;
    int count = 0;
    for (int t = 0; t < student.length; t++) {
      int p = positions[t];
      if (p < 0) {
        continue;
      }
      double[] m = logSoftmax(student[t], 1.0);
      int buckets = rest ? k + 1 : k;
      float[] teacherLog = new float[buckets];
      float[] studentLog = new float[buckets];
      boolean[] kept = new boolean[m.length];
      for (int i = 0; i < k; i++) {
        int id = teacher.ids()[p * k + i];
        kept[id] = true;
        teacherLog[i] = teacher.logProbs()[p * k + i];
        studentLog[i] = (float) m[id];
      }
      if (rest) {
        double mass = 0;
        for (int v = 0; v < m.length; v++) {
          mass += kept[v] ? 0 : Math.exp(m[v]);
        }
        teacherLog[k] = teacher.restLogMass()[p];
        studentLog[k] = (float) Math.log(Math.max(mass, REST_FLOOR));
      }
      double[] te = logSoftmax(teacherLog, temperature);
      double[] s = logSoftmax(studentLog, temperature);
      double kl = reverse ? kl(s, floor(te)) : kl(te, s);
      double ce = -m[labels[t]];
      total += alpha * temperature * temperature * kl + (1 - alpha) * ce;
      count++;
    }
    if (count == 0) {
      throw new IllegalArgumentException("no token is masked in: the loss is undefined");
    }
    return total / count;
  }

  /**
   * The smallest mass of the student's rest bucket (its log is taken): far below anything that
   * matters, it keeps log 0 out of the loss when the student puts all its mass on the kept ids.
   */
  public static final double REST_FLOOR = 1e-30;

  /** Log-probabilities with -Infinity (an empty rest bucket) raised to log(REST_FLOOR). */
  static double[] floor(double[] log) {
    double[] out = log.clone();
    for (int i = 0; i < out.length; i++) {
      out[i] = Math.max(out[i], Math.log(REST_FLOOR));
    }
    return out;
  }
}
