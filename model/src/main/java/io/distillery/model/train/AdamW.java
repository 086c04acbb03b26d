package io.distillery.model.train;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.pytorch.jni.JniUtils;
import io.distillery.model.safetensors.DType;
import io.distillery.model.safetensors.SafetensorsFile;
import io.distillery.model.safetensors.SafetensorsWriter;
import io.distillery.model.safetensors.TensorData;
import io.distillery.model.safetensors.TensorInfo;
import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * AdamW (Loshchilov and Hutter, arXiv 1711.05101, Algorithm 2) over a model's named parameters,
 * updated in place after each backward pass:
 *
 * <pre>
 * g = clip(grad)          m = b1 m + (1-b1) g          v = b2 v + (1-b2) g^2
 * p -= lr * ( (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps)  +  wd * p )
 * </pre>
 *
 * Weight decay applies to matrices only (embeddings and linear weights), not to norm weights or
 * biases, as is usual for transformers. Clipping scales all gradients by {@code min(1, maxNorm /
 * ||g||)}, {@code ||g||} the global L2 norm (Pascanu et al., arXiv 1211.5063). Owns its moment
 * estimates in a sub-manager of the parameters' manager; {@link #saveState} and {@link #loadState}
 * persist them with the step count so that an interrupted run resumes with the same update.
 */
public final class AdamW implements AutoCloseable {

  private final Map<String, NDArray> parameters;
  private final Map<String, NDArray[]> moments = new LinkedHashMap<>();
  private final NDManager state;
  private final double beta1;
  private final double beta2;
  private final double epsilon;
  private final double weightDecay;
  private int step;

  public AdamW(
      Map<String, NDArray> parameters,
      NDManager owner,
      double beta1,
      double beta2,
      double epsilon,
      double weightDecay) {
    this.parameters = parameters;
    this.state = owner.newSubManager();
    this.state.setName("adamw-state");
    this.beta1 = beta1;
    this.beta2 = beta2;
    this.epsilon = epsilon;
    this.weightDecay = weightDecay;
    for (Map.Entry<String, NDArray> entry : parameters.entrySet()) {
      NDArray p = entry.getValue();
      moments.put(
          entry.getKey(), new NDArray[] {state.zeros(p.getShape()), state.zeros(p.getShape())});
    }
  }

  /**
   * One update from the gradients currently held by the parameters.
   *
   * @param maxGradNorm clip threshold; non-positive for none
   * @return the global gradient norm before clipping; when it is not finite (an overflow or NaN in
   *     the backward pass) nothing is updated and the step is not counted
   */
  public double step(double learningRate, double maxGradNorm) {
    // PyTorch's grad mode is per thread and on by default in a thread the engine did not start on
    // (a worker's
    // job thread); in-place updates of leaf parameters are only allowed with it off
    boolean gradMode = JniUtils.isGradMode();
    JniUtils.setGradMode(false);
    try {
      return update(learningRate, maxGradNorm);
    } finally {
      JniUtils.setGradMode(gradMode);
    }
  }

  private double update(double learningRate, double maxGradNorm) {
    try (NDManager scope = state.newSubManager()) {
      List<NDArray> gradients = new ArrayList<>(parameters.size());
      double squares = 0;
      for (NDArray p : parameters.values()) {
        NDArray g = p.getGradient();
        g.attach(scope);
        gradients.add(g);
        squares += g.square().sum().getFloat();
      }
      double norm = Math.sqrt(squares);
      if (!Double.isFinite(norm)) {
        return norm;
      }
      double scale = maxGradNorm > 0 && norm > maxGradNorm ? maxGradNorm / norm : 1.0;
      step++;
      double correction1 = 1 - Math.pow(beta1, step);
      double correction2 = 1 - Math.pow(beta2, step);
      int i = 0;
      for (Map.Entry<String, NDArray> entry : parameters.entrySet()) {
        NDArray p = entry.getValue();
        NDArray g = gradients.get(i++);
        NDArray[] mv = moments.get(entry.getKey());
        mv[0].muli((float) beta1).addi(g.mul((float) ((1 - beta1) * scale)));
        mv[1].muli((float) beta2).addi(g.square().mul((float) ((1 - beta2) * scale * scale)));
        NDArray denominator =
            own(scope, mv[1].div((float) correction2)).sqrt().add((float) epsilon);
        NDArray update =
            own(scope, mv[0].mul((float) (learningRate / correction1))).div(denominator);
        if (weightDecay > 0 && p.getShape().dimension() >= 2) {
          p.muli((float) (1 - learningRate * weightDecay));
        }
        p.subi(update);
      }
      return norm;
    }
  }

  public int steps() {
    return step;
  }

  /**
   * Writes both moment estimates ({@code m.<name>}, {@code v.<name>}, F32) and the step count
   * (metadata {@code step}) to the safetensors {@code file}.
   */
  public void saveState(Path file) throws IOException {
    Map<String, TensorData> tensors = new LinkedHashMap<>();
    for (Map.Entry<String, NDArray[]> entry : moments.entrySet()) {
      long[] shape = entry.getValue()[0].getShape().getShape();
      tensors.put(
          "m." + entry.getKey(),
          TensorData.ofFloats(DType.F32, shape, entry.getValue()[0].toFloatArray()));
      tensors.put(
          "v." + entry.getKey(),
          TensorData.ofFloats(DType.F32, shape, entry.getValue()[1].toFloatArray()));
    }
    SafetensorsWriter.write(file, tensors, Map.of("step", Integer.toString(step)));
  }

  /**
   * Restores what {@link #saveState} wrote.
   *
   * @throws IOException naming the parameter when the file lacks its moments or holds another
   *     shape, or when the step count is missing
   */
  public void loadState(Path file) throws IOException {
    try (SafetensorsFile state = SafetensorsFile.open(file)) {
      String saved = state.metadata().get("step");
      if (saved == null) {
        throw new IOException(file + ": no step count in the optimizer state");
      }
      for (Map.Entry<String, NDArray[]> entry : moments.entrySet()) {
        long[] shape = entry.getValue()[0].getShape().getShape();
        for (int k = 0; k < 2; k++) {
          String name = (k == 0 ? "m." : "v.") + entry.getKey();
          if (!state.contains(name)) {
            throw new IOException(file + ": no optimizer state for " + entry.getKey());
          }
          TensorInfo info = state.info(name);
          if (!Arrays.equals(info.shape(), shape)) {
            throw new IOException(
                file
                    + ": optimizer state for "
                    + entry.getKey()
                    + " has shape "
                    + Arrays.toString(info.shape())
                    + ", the parameter "
                    + Arrays.toString(shape));
          }
          entry.getValue()[k].set(state.floats(name));
        }
      }
      step = Integer.parseInt(saved.trim());
    } catch (NumberFormatException e) {
      throw new IOException(file + ": bad step count in the optimizer state: " + e.getMessage(), e);
    }
  }

  private static NDArray own(NDManager scope, NDArray array) {
    array.attach(scope);
    return array;
  }

  @Override
  public void close() {
    state.close();
  }
}
