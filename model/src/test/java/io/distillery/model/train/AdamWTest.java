package io.distillery.model.train;

import static org.assertj.core.api.Assertions.assertThat;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import ai.djl.training.GradientCollector;
import java.util.LinkedHashMap;
import java.util.Map;
import org.assertj.core.data.Offset;
import org.junit.jupiter.api.Test;

class AdamWTest {

  @Test
  void shouldStepBySignOfGradientWithDecayOnMatricesOnly() {
    try (NDManager manager = Engine.getEngine("PyTorch").newBaseManager()) {
      NDArray matrix = manager.create(new float[] {1f, -2f}, new Shape(1, 2));
      NDArray vector = manager.create(new float[] {1f, -2f});
      Map<String, NDArray> parameters = new LinkedHashMap<>();
      parameters.put("w", matrix);
      parameters.put("norm", vector);
      for (NDArray p : parameters.values()) {
        p.setRequiresGradient(true);
      }
      // loss = sum(w * [3, -4]) + sum(norm * [0, 0]): grad w = [3, -4], grad norm = 0; global norm
      // 5
      try (NDManager step = manager.newSubManager()) {
        try (GradientCollector collector = Engine.getEngine("PyTorch").newGradientCollector()) {
          NDArray loss =
              matrix
                  .mul(step.create(new float[] {3f, -4f}, new Shape(1, 2)))
                  .sum()
                  .add(vector.mul(step.zeros(new Shape(2))).sum());
          collector.backward(loss);
        }
      }
      try (AdamW adam = new AdamW(parameters, manager, 0.9, 0.95, 1e-8, 0.5)) {
        double norm = adam.step(0.1, 1.0);
        assertThat(norm).isCloseTo(5.0, Offset.offset(1e-5));
        // first bias-corrected Adam step is lr * sign(g), clipping does not change the sign;
        // decoupled decay: w * (1 - lr * wd) = w * 0.95
        assertThat(matrix.toFloatArray())
            .containsExactly(new float[] {0.85f, -1.8f}, Offset.offset(1e-5f));
        assertThat(vector.toFloatArray())
            .containsExactly(new float[] {1f, -2f}, Offset.offset(1e-6f));
        assertThat(adam.steps()).isEqualTo(1);
      }
    }
  }

  @Test
  void shouldSkipTheUpdateWhenTheGradientIsNotFinite() {
    try (NDManager manager = Engine.getEngine("PyTorch").newBaseManager()) {
      NDArray matrix = manager.create(new float[] {1f, -2f}, new Shape(1, 2));
      matrix.setRequiresGradient(true);
      try (NDManager step = manager.newSubManager()) {
        try (GradientCollector collector = Engine.getEngine("PyTorch").newGradientCollector()) {
          collector.backward(matrix.mul(Float.POSITIVE_INFINITY).sum());
        }
      }
      try (AdamW adam = new AdamW(Map.of("w", matrix), manager, 0.9, 0.95, 1e-8, 0.5)) {
        assertThat(Double.isFinite(adam.step(0.1, 1.0))).isFalse();
        assertThat(matrix.toFloatArray()).containsExactly(1f, -2f);
        assertThat(adam.steps()).isZero();
      }
    }
  }

  @Test
  void shouldWarmUpLinearlyThenDecayByCosineToTheFloor() {
    LearningRateSchedule schedule = new LearningRateSchedule(1.0, 10, 110, 0.1);
    assertThat(schedule.at(1)).isCloseTo(0.1, Offset.offset(1e-12));
    assertThat(schedule.at(10)).isCloseTo(1.0, Offset.offset(1e-12));
    assertThat(schedule.at(60)).isCloseTo(0.55, Offset.offset(1e-12));
    assertThat(schedule.at(110)).isCloseTo(0.1, Offset.offset(1e-12));
  }

  /** loss = sum(w * c): the gradient of w is c. */
  private static void backward(NDManager manager, NDArray w, float[] c) {
    try (NDManager step = manager.newSubManager()) {
      try (GradientCollector collector = Engine.getEngine("PyTorch").newGradientCollector()) {
        collector.backward(w.mul(step.create(c, new Shape(1, c.length))).sum());
      }
    }
  }

  @Test
  void shouldContinueLikeAnUninterruptedRunWhenTheStateIsReloaded(
      @org.junit.jupiter.api.io.TempDir java.nio.file.Path dir) throws Exception {
    float[] g1 = {3f, -4f};
    float[] g2 = {-1f, 0.5f};
    try (NDManager manager = Engine.getEngine("PyTorch").newBaseManager()) {
      NDArray a = manager.create(new float[] {1f, -2f}, new Shape(1, 2));
      a.setRequiresGradient(true);
      try (AdamW adam = new AdamW(Map.of("w", a), manager, 0.9, 0.95, 1e-8, 0.1)) {
        backward(manager, a, g1);
        adam.step(0.1, 0);
        adam.saveState(dir.resolve("adam.safetensors"));
        backward(manager, a, g2);
        adam.step(0.1, 0);
      }
      NDArray b = manager.create(new float[] {1f, -2f}, new Shape(1, 2));
      b.setRequiresGradient(true);
      try (AdamW first = new AdamW(Map.of("w", b), manager, 0.9, 0.95, 1e-8, 0.1)) {
        backward(manager, b, g1);
        first.step(0.1, 0);
      }
      try (AdamW resumed = new AdamW(Map.of("w", b), manager, 0.9, 0.95, 1e-8, 0.1)) {
        resumed.loadState(dir.resolve("adam.safetensors"));
        assertThat(resumed.steps()).isEqualTo(1);
        backward(manager, b, g2);
        resumed.step(0.1, 0);
      }
      // a fresh optimizer without the moments would take a full lr * sign(g) step instead
      assertThat(b.toFloatArray()).containsExactly(a.toFloatArray(), Offset.offset(1e-6f));
    }
  }

  @Test
  void shouldNameTheParameterWhenTheStateDoesNotFit(
      @org.junit.jupiter.api.io.TempDir java.nio.file.Path dir) throws Exception {
    try (NDManager manager = Engine.getEngine("PyTorch").newBaseManager()) {
      NDArray a = manager.create(new float[] {1f, -2f}, new Shape(1, 2));
      NDArray c = manager.create(new float[] {1f, -2f, 3f}, new Shape(1, 3));
      try (AdamW adam = new AdamW(Map.of("w", a), manager, 0.9, 0.95, 1e-8, 0.1);
          AdamW other = new AdamW(Map.of("w", c), manager, 0.9, 0.95, 1e-8, 0.1)) {
        adam.saveState(dir.resolve("adam.safetensors"));
        org.assertj.core.api.Assertions.assertThatThrownBy(
                () -> other.loadState(dir.resolve("adam.safetensors")))
            .isInstanceOf(java.io.IOException.class)
            .hasMessageContaining("w has shape [1, 2]");
      }
    }
  }

  @Test
  void shouldUpdateInPlaceWhenCalledOnAThreadWithGradModeOn() throws Exception {
    try (NDManager manager = Engine.getEngine("PyTorch").newBaseManager()) {
      NDArray a = manager.create(new float[] {1f, -2f}, new Shape(1, 2));
      a.setRequiresGradient(true);
      backward(manager, a, new float[] {3f, -4f});
      // a fresh thread: PyTorch's thread-local grad mode starts on there
      Thread t =
          new Thread(
              () -> {
                ai.djl.pytorch.jni.JniUtils.setGradMode(true);
                try (AdamW adam = new AdamW(Map.of("w", a), manager, 0.9, 0.95, 1e-8, 0)) {
                  adam.step(0.1, 0);
                }
                assertThat(ai.djl.pytorch.jni.JniUtils.isGradMode()).isTrue();
              });
      java.util.concurrent.atomic.AtomicReference<Throwable> failure =
          new java.util.concurrent.atomic.AtomicReference<>();
      t.setUncaughtExceptionHandler((th, e) -> failure.set(e));
      t.start();
      t.join();
      assertThat(failure.get()).isNull();
      assertThat(a.toFloatArray()).containsExactly(new float[] {0.9f, -1.9f}, Offset.offset(1e-5f));
    }
  }
}
