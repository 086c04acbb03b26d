package io.distillery.distiller.train;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.training.GradientCollector;
import io.distillery.distiller.DistillerParams;
import io.distillery.distiller.loss.KdLossGraph;
import io.distillery.platform.model.llama.LlamaModel;
import io.distillery.platform.model.safetensors.Checkpoint;
import io.distillery.platform.model.safetensors.DType;
import io.distillery.platform.model.safetensors.SafetensorsWriter;
import io.distillery.platform.model.safetensors.TensorData;
import io.distillery.platform.model.safetensors.TensorSource;
import io.distillery.platform.model.tokenizer.ByteTokenizer;
import io.distillery.platform.model.train.LearningRateSchedule;
import io.distillery.platform.tasks.TaskBatch;
import io.distillery.platform.tasks.TaskExample;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;

/**
 * Distils a teacher into a student: per step a seeded batch (the RNG is {@code SplittableRandom(seed + step)}, so the
 * "RNG position" of a checkpoint is its step), teacher logits on the fly, the {@link KdLossGraph} loss, AdamW with
 * warmup + cosine and global-norm clipping. Every {@code checkpointEvery} steps the student weights, both Adam moments
 * and the step are written atomically into {@code checkpointDir}; {@link #train} resumes from there when present.
 * AdamW is implemented here because the platform's keeps its moments private (they must be checkpointed).
 */
public final class DistillTrainer {

  private static final String ENGINE = "PyTorch";
  private static final double BETA1 = 0.9;
  private static final double BETA2 = 0.999;
  private static final double EPS = 1e-8;
  private static final double MAX_GRAD_NORM = 1.0;

  /** Called after every step. */
  public interface Listener {
    void onStep(int step, int total, double loss, double tokensPerSecond) throws Exception;
  }

  private final DistillerParams params;
  private final ByteTokenizer tokenizer = ByteTokenizer.instance();

  public DistillTrainer(DistillerParams params) {
    this.params = params;
  }

  /** A seeded batch for {@code step}, examples drawn with replacement by {@code weights}. */
  public List<TaskExample> batch(List<TaskExample> data, double[] weights, int step) {
    SplittableRandom random = new SplittableRandom(params.seed() + step);
    double total = 0;
    for (double w : weights) {
      total += w;
    }
    List<TaskExample> out = new ArrayList<>();
    for (int b = 0; b < params.batch(); b++) {
      double r = random.nextDouble() * total;
      int i = 0;
      while (i < weights.length - 1 && (r -= weights[i]) >= 0) {
        i++;
      }
      out.add(data.get(i));
    }
    return out;
  }

  /**
   * Trains {@code student} in place, resuming from {@code checkpointDir} when it holds a checkpoint.
   *
   * @return per step losses of the steps run in this call (index 0 = first step run)
   */
  public List<Double> train(LlamaModel teacher, LlamaModel student, List<TaskExample> data, double[] weights,
      Path checkpointDir, Listener listener) throws Exception {
    if (data.isEmpty()) {
      throw new IllegalArgumentException("the dataset is empty: nothing to distil");
    }
    Map<String, NDArray> parameters = student.parameters();
    NDManager state = student.manager().newSubManager();
    Map<String, NDArray[]> moments = new LinkedHashMap<>();
    for (Map.Entry<String, NDArray> e : parameters.entrySet()) {
      moments.put(e.getKey(), new NDArray[] {state.zeros(e.getValue().getShape()), state.zeros(e.getValue().getShape())});
    }
    int start = checkpointDir == null ? 0 : restore(checkpointDir, parameters, moments);
    int total = params.steps();
    LearningRateSchedule schedule = new LearningRateSchedule(params.lr(), Math.max(1, total / 10), total, 0.1);
    List<Double> losses = new ArrayList<>();
    long tokens = 0;
    long began = System.nanoTime();
    student.setTrainable(true);
    try {
      for (int step = start + 1; step <= total; step++) {
        TaskBatch batch = TaskBatch.of(batch(data, weights, step), tokenizer);
        float loss;
        try (NDManager scope = student.manager().newSubManager()) {
          NDArray teacherLogits = teacher.forward(scope, batch.inputs());
          try (GradientCollector collector = Engine.getEngine(ENGINE).newGradientCollector()) {
            NDArray logits = student.forward(scope, batch.inputs());
            NDArray l = KdLossGraph.loss(logits, teacherLogits, batch.targets(), batch.mask(), params.temperature(),
                params.alpha(), params.reverseKl(), scope);
            collector.backward(l);
            loss = l.getFloat();
          }
          if (!Float.isFinite(loss)) {
            throw new IllegalStateException("distillation diverged at step " + step + " (loss " + loss
                + "); lower lr");
          }
          adamStep(parameters, moments, step, schedule.at(step), scope);
        }
        student.zeroGradients();
        losses.add((double) loss);
        tokens += batch.realTokens();
        if (checkpointDir != null && (step % params.checkpointEvery() == 0 || step == total)) {
          save(checkpointDir, parameters, moments, step);
        }
        listener.onStep(step, total, loss, tokens / Math.max(1e-9, (System.nanoTime() - began) / 1e9));
      }
    } finally {
      student.setTrainable(false);
      state.close();
    }
    return losses;
  }

  private static void adamStep(Map<String, NDArray> parameters, Map<String, NDArray[]> moments, int step, double lr,
      NDManager scope) {
    double squares = 0;
    for (NDArray p : parameters.values()) {
      NDArray g = p.getGradient();
      g.attach(scope);
      squares += g.square().sum().getFloat();
    }
    double norm = Math.sqrt(squares);
    double scale = norm > MAX_GRAD_NORM ? MAX_GRAD_NORM / norm : 1.0;
    double c1 = 1 - Math.pow(BETA1, step);
    double c2 = 1 - Math.pow(BETA2, step);
    for (Map.Entry<String, NDArray> e : parameters.entrySet()) {
      NDArray p = e.getValue();
      NDArray g = p.getGradient();
      g.attach(scope);
      NDArray[] mv = moments.get(e.getKey());
      NDArray gm = g.mul((float) ((1 - BETA1) * scale));
      NDArray gv = g.square().mul((float) ((1 - BETA2) * scale * scale));
      gm.attach(scope);
      gv.attach(scope);
      mv[0].muli((float) BETA1).addi(gm);
      mv[1].muli((float) BETA2).addi(gv);
      NDArray den = mv[1].div((float) c2);
      den.attach(scope);
      NDArray num = mv[0].mul((float) (lr / c1));
      num.attach(scope);
      p.subi(num.div(den.sqrt().add((float) EPS)));
    }
  }

  /** Writes weights + moments + step into {@code dir} atomically (temp dir, then rename). */
  static void save(Path dir, Map<String, NDArray> parameters, Map<String, NDArray[]> moments, int step)
      throws IOException {
    Files.createDirectories(dir);
    Path tmp = dir.resolve("ckpt.tmp");
    if (Files.exists(tmp)) {
      deleteTree(tmp);
    }
    Files.createDirectories(tmp);
    Map<String, TensorSource> tensors = new LinkedHashMap<>();
    for (Map.Entry<String, NDArray> e : parameters.entrySet()) {
      long[] shape = e.getValue().getShape().getShape();
      tensors.put("p." + e.getKey(), TensorData.ofFloats(DType.F32, shape, e.getValue().toFloatArray()));
      tensors.put("m." + e.getKey(), TensorData.ofFloats(DType.F32, shape, moments.get(e.getKey())[0].toFloatArray()));
      tensors.put("v." + e.getKey(), TensorData.ofFloats(DType.F32, shape, moments.get(e.getKey())[1].toFloatArray()));
    }
    SafetensorsWriter.write(tmp.resolve(Checkpoint.SINGLE_FILE), tensors, Map.of("step", Integer.toString(step)));
    Files.writeString(tmp.resolve("step"), Integer.toString(step), StandardCharsets.UTF_8);
    Path target = dir.resolve("ckpt");
    Path old = dir.resolve("ckpt.old");
    if (Files.exists(old)) {
      deleteTree(old);
    }
    if (Files.exists(target)) {
      Files.move(target, old, StandardCopyOption.ATOMIC_MOVE);
    }
    Files.move(tmp, target, StandardCopyOption.ATOMIC_MOVE);
    if (Files.exists(old)) {
      deleteTree(old);
    }
  }

  /** Loads the checkpoint in {@code dir} if any; returns its step (0 when none). */
  static int restore(Path dir, Map<String, NDArray> parameters, Map<String, NDArray[]> moments) throws IOException {
    Path ckpt = dir.resolve("ckpt");
    if (!Files.exists(ckpt.resolve("step"))) {
      return 0;
    }
    int step = Integer.parseInt(Files.readString(ckpt.resolve("step")).trim());
    try (Checkpoint c = Checkpoint.open(ckpt)) {
      for (Map.Entry<String, NDArray> e : parameters.entrySet()) {
        e.getValue().set(c.floats("p." + e.getKey()));
        moments.get(e.getKey())[0].set(c.floats("m." + e.getKey()));
        moments.get(e.getKey())[1].set(c.floats("v." + e.getKey()));
      }
    }
    return step;
  }

  private static void deleteTree(Path p) throws IOException {
    try (var s = Files.walk(p)) {
      for (Path f : s.sorted(java.util.Comparator.reverseOrder()).toList()) {
        Files.delete(f);
      }
    }
  }
}
