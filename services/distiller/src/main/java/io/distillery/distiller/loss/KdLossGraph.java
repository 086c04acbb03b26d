package io.distillery.distiller.loss;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;

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
}
