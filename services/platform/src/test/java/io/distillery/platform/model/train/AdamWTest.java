package io.distillery.platform.model.train;

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
            // loss = sum(w * [3, -4]) + sum(norm * [0, 0]): grad w = [3, -4], grad norm = 0; global norm 5
            try (NDManager step = manager.newSubManager()) {
                try (GradientCollector collector = Engine.getEngine("PyTorch").newGradientCollector()) {
                    NDArray loss = matrix.mul(step.create(new float[] {3f, -4f}, new Shape(1, 2))).sum()
                            .add(vector.mul(step.zeros(new Shape(2))).sum());
                    collector.backward(loss);
                }
            }
            try (AdamW adam = new AdamW(parameters, manager, 0.9, 0.95, 1e-8, 0.5)) {
                double norm = adam.step(0.1, 1.0);
                assertThat(norm).isCloseTo(5.0, Offset.offset(1e-5));
                // first bias-corrected Adam step is lr * sign(g), clipping does not change the sign;
                // decoupled decay: w * (1 - lr * wd) = w * 0.95
                assertThat(matrix.toFloatArray()).containsExactly(new float[] {0.85f, -1.8f}, Offset.offset(1e-5f));
                assertThat(vector.toFloatArray()).containsExactly(new float[] {1f, -2f}, Offset.offset(1e-6f));
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
}
