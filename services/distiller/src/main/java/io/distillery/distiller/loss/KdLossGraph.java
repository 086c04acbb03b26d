package io.distillery.distiller.loss;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import io.distillery.distiller.teacher.TopKLogits;
import java.util.Arrays;

/**
 * The differentiable KD loss on DJL arrays (DJL has no KL loss): per token {@code alpha * T^2 *
 * KL(softmax(t/T) || softmax(s/T)) + (1-alpha) * CE(s, label)} (reverse KL when asked), weighted by
 * {@code mask} and divided by the mask's sum. {@link KdLoss} is the array reference it is tested
 * against.
 */
public final class KdLossGraph {

  private KdLossGraph() {}

  /**
   * @param student {@code [batch, length, vocab]} logits (gradients flow)
   * @param teacher {@code [batch, length, vocab]} logits (treated as constants)
   * @param targets {@code batch * length} label ids
   * @param mask {@code batch * length}, 1 for answer tokens, 0 for prompt and padding
   * @return the scalar loss attached to {@code manager}
   */
  public static NDArray loss(
      NDArray student,
      NDArray teacher,
      long[] targets,
      float[] mask,
      double temperature,
      double alpha,
      boolean reverse,
      NDManager manager) {
    Shape shape = student.getShape();
    int batch = Math.toIntExact(shape.get(0));
    int length = Math.toIntExact(shape.get(1));
    int vocab = Math.toIntExact(shape.get(2));
    float t = (float) temperature;
    NDArray logS = student.div(t).logSoftmax(-1);
    NDArray logT = teacher.stopGradient().div(t).logSoftmax(-1);
    NDArray kl =
        reverse
            ? logS.exp().mul(logS.sub(logT)).sum(new int[] {-1})
            : logT.exp().mul(logT.sub(logS)).sum(new int[] {-1});
    NDArray oneHot = manager.create(targets, new Shape(batch, length)).oneHot(vocab);
    NDArray ce = student.logSoftmax(-1).mul(oneHot).sum(new int[] {-1}).neg();
    NDArray perToken =
        kl.mul((float) (alpha * temperature * temperature)).add(ce.mul((float) (1 - alpha)));
    NDArray weights = manager.create(mask, new Shape(batch, length));
    float count = 0;
    for (float m : mask) {
      count += m;
    }
    if (count == 0) {
      throw new IllegalArgumentException("no token is masked in: the loss is undefined");
    }
    return perToken.mul(weights).sum().div(count);
  }

  /**
   * {@link KdLoss#topKLoss} on DJL arrays: the student's masked positions are gathered, its
   * log-probs at the teacher's kept ids picked ({@code gather}) and its rest bucket summed over a
   * 0/1 mask of the other ids; the teacher's tempered bucket probabilities are constants computed
   * here.
   *
   * @param student {@code [batch, length, vocab]} logits (gradients flow)
   * @param teacher the cached top-k distributions
   * @param positions {@code batch * length}: the position in {@code teacher} of each token, -1
   *     where the token does not count (prompt, padding)
   * @param targets {@code batch * length} label ids
   * @return the scalar loss, averaged over the counted tokens, attached to {@code manager}
   */
  public static NDArray topKLoss(
      NDArray student,
      TopKLogits teacher,
      int[] positions,
      long[] targets,
      double temperature,
      double alpha,
      boolean reverse,
      NDManager manager) {
    Shape shape = student.getShape();
    int vocab = Math.toIntExact(shape.get(2));
    if (vocab != teacher.vocab()) {
      throw new IllegalArgumentException(
          "the student's vocabulary ("
              + vocab
              + ") differs from the cached teacher's ("
              + teacher.vocab()
              + ")");
    }
    int k = teacher.k();
    boolean rest = !teacher.complete();
    int buckets = rest ? k + 1 : k;
    int count = 0;
    boolean[] counted = new boolean[positions.length];
    for (int t = 0; t < positions.length; t++) {
      counted[t] = positions[t] >= 0;
      count += counted[t] ? 1 : 0;
    }
    if (count == 0) {
      throw new IllegalArgumentException("no token is masked in: the loss is undefined");
    }
    long[] ids = new long[count * k];
    long[] labels = new long[count];
    float[] teacherProb = new float[count * buckets];
    float[] teacherLog = new float[count * buckets];
    float[] others = rest ? new float[Math.multiplyExact(count, vocab)] : null;
    double floor = Math.log(KdLoss.REST_FLOOR);
    double[] logits = new double[buckets];
    for (int t = 0, n = 0; t < positions.length; t++) {
      if (!counted[t]) {
        continue;
      }
      int p = positions[t];
      if (others != null) {
        Arrays.fill(others, n * vocab, (n + 1) * vocab, 1f);
      }
      for (int i = 0; i < k; i++) {
        int id = teacher.ids()[p * k + i];
        ids[n * k + i] = id;
        logits[i] = teacher.logProbs()[p * k + i] / temperature;
        if (others != null) {
          others[n * vocab + id] = 0f;
        }
      }
      if (rest) {
        logits[k] = teacher.restLogMass()[p] / temperature;
      }
      double max = Double.NEGATIVE_INFINITY;
      for (double l : logits) {
        max = Math.max(max, l);
      }
      double sum = 0;
      for (double l : logits) {
        sum += Math.exp(l - max);
      }
      double lse = max + Math.log(sum);
      for (int b = 0; b < buckets; b++) {
        double log = logits[b] - lse;
        teacherProb[n * buckets + b] = (float) Math.exp(log);
        // an empty rest bucket (log 0): no weight in KL(P||Q); the floor keeps KL(Q||P) finite
        teacherLog[n * buckets + b] = (float) Math.max(log, floor);
      }
      labels[n] = targets[t];
      n++;
    }
    float t = (float) temperature;
    NDArray flat = student.reshape(-1, vocab);
    NDArray rows =
        manager
            .create(counted, new Shape(positions.length, 1))
            .broadcast(new Shape(positions.length, vocab));
    NDArray logS = flat.booleanMask(rows).reshape(count, vocab).logSoftmax(-1);
    NDArray kept = logS.gather(manager.create(ids, new Shape(count, k)), 1);
    if (rest) {
      NDArray restMass =
          logS.exp()
              .mul(manager.create(others, new Shape(count, vocab)))
              .sum(new int[] {1}, true)
              .maximum((float) KdLoss.REST_FLOOR)
              .log();
      kept = kept.concat(restMass, 1);
    }
    NDArray logQ = kept.div(t).logSoftmax(-1);
    NDArray logP = manager.create(teacherLog, new Shape(count, buckets));
    NDArray kl =
        reverse
            ? logQ.exp().mul(logQ.sub(logP)).sum(new int[] {-1})
            : manager
                .create(teacherProb, new Shape(count, buckets))
                .mul(logP.sub(logQ))
                .sum(new int[] {-1});
    NDArray ce = logS.gather(manager.create(labels, new Shape(count, 1)), 1).reshape(count).neg();
    return kl.mul((float) (alpha * temperature * temperature))
        .add(ce.mul((float) (1 - alpha)))
        .sum()
        .div((float) count);
  }
}
