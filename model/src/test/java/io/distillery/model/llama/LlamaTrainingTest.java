package io.distillery.model.llama;

import static org.assertj.core.api.Assertions.assertThat;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.index.NDIndex;
import ai.djl.ndarray.types.Shape;
import ai.djl.training.GradientCollector;
import io.distillery.model.safetensors.DType;
import java.io.IOException;
import java.nio.file.Path;
import java.util.Map;
import org.assertj.core.data.Offset;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class LlamaTrainingTest {

  @TempDir Path dir;

  private NDManager manager;

  @BeforeEach
  void setUp() {
    manager = Engine.getEngine("PyTorch").newBaseManager();
  }

  @AfterEach
  void tearDown() {
    manager.close();
  }

  @Test
  void shouldLowerLossWhenOneSgdStepIsTaken() throws IOException {
    // plain SGD, learning rate 1: w -= grad
    int[][] batch = TinyModels.tokens(2, 10, 64, 77);
    try (LlamaModel model = LlamaModel.random(TinyModels.tiny(false), 11, manager)) {
      model.setTrainable(true);
      float before;
      try (NDManager step = manager.newSubManager()) {
        try (GradientCollector collector = Engine.getEngine("PyTorch").newGradientCollector()) {
          NDArray loss = nextTokenLoss(model.forward(step, batch), batch, step);
          collector.backward(loss);
          before = loss.getFloat();
        }
        for (Map.Entry<String, NDArray> parameter : model.parameters().entrySet()) {
          try (NDArray gradient = parameter.getValue().getGradient()) {
            assertThat(gradient.abs().sum().getFloat()).as(parameter.getKey()).isPositive();
            parameter.getValue().subi(gradient);
          }
        }
      }
      model.zeroGradients();
      try (NDArray gradient =
          model.parameters().get("model.layers.0.mlp.up_proj.weight").getGradient()) {
        assertThat(gradient.abs().sum().getFloat()).as("gradients zeroed").isZero();
      }
      float after;
      try (NDManager step = manager.newSubManager()) {
        after = nextTokenLoss(model.forward(step, batch), batch, step).getFloat();
      }
      assertThat(before)
          .as("random init predicts uniformly")
          .isCloseTo((float) Math.log(64), Offset.offset(0.1f));
      assertThat(after).isLessThan(before - 0.01f);

      model.save(dir, DType.F32);
      try (LlamaModel saved = LlamaModel.load(dir, manager);
          NDManager step = manager.newSubManager()) {
        assertThat(nextTokenLoss(saved.forward(step, batch), batch, step).getFloat())
            .as("trained weights saved")
            .isEqualTo(after);
      }
    }
  }

  @Test
  void shouldClearNonFiniteGradientsWhenGradientsAreZeroed() {
    int[][] batch = TinyModels.tokens(1, 6, 64, 5);
    try (LlamaModel model = LlamaModel.random(TinyModels.tiny(false), 3, manager)) {
      model.setTrainable(true);
      try (NDManager step = manager.newSubManager();
          GradientCollector collector = Engine.getEngine("PyTorch").newGradientCollector()) {
        collector.backward(nextTokenLoss(model.forward(step, batch), batch, step));
      }
      NDArray weight = model.parameters().get("model.layers.0.self_attn.q_proj.weight");
      try (NDArray gradient = weight.getGradient()) {
        gradient.set(new NDIndex("0, 0"), Float.NaN);
        gradient.set(new NDIndex("0, 1"), Float.POSITIVE_INFINITY);
      }
      model.zeroGradients();
      try (NDArray gradient = weight.getGradient()) {
        assertThat(gradient.isNaN().any().getBoolean()).as("a NaN survives x - x").isFalse();
        assertThat(gradient.abs().sum().getFloat()).isZero();
      }
    }
  }

  /** Mean cross-entropy of predicting token t+1 from positions up to t. */
  private static NDArray nextTokenLoss(NDArray logits, int[][] batch, NDManager manager) {
    int seq = batch[0].length;
    long[] targets = new long[batch.length * (seq - 1)];
    for (int b = 0; b < batch.length; b++) {
      for (int s = 1; s < seq; s++) {
        targets[b * (seq - 1) + s - 1] = batch[b][s];
      }
    }
    NDArray oneHot = manager.create(targets, new Shape(batch.length, seq - 1)).oneHot(64);
    NDArray logProbs = logits.get(new NDIndex(":, :-1, :")).logSoftmax(-1);
    return logProbs.mul(oneHot).sum(new int[] {-1}).mean().neg();
  }
}
