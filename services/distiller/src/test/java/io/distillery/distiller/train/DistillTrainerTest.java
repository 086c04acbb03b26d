package io.distillery.distiller.train;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.distillery.distiller.DistillerParams;
import io.distillery.distiller.DistillerParams.Student;
import io.distillery.distiller.student.StudentInit;
import io.distillery.platform.model.config.LlamaConfig;
import io.distillery.platform.model.llama.LlamaModel;
import io.distillery.platform.tasks.TaskExample;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class DistillTrainerTest {

  static LlamaConfig teacherConfig() {
    return LlamaConfig.builder().vocabSize(260).hiddenSize(32).intermediateSize(48).numHiddenLayers(2)
        .numAttentionHeads(4).numKeyValueHeads(2).headDim(8).maxPositionEmbeddings(64).build();
  }

  static List<TaskExample> data() {
    return List.of(new TaskExample("t", "1+1=", "2"), new TaskExample("t", "2+2=", "4"),
        new TaskExample("t", "3+1=", "4"));
  }

  static DistillerParams params(int steps) {
    return new DistillerParams(null, steps, 4, 32, 1e-2, 2.0, 1.0, false, null, 3, null, null, 5L, null);
  }

  static LlamaModel student(LlamaModel teacher, Path dir) throws Exception {
    StudentInit.write(teacher, new Student(1, 16, 2, 1, 24), dir);
    return LlamaModel.load(dir);
  }

  @Test
  void shouldLowerKdLossWhenDistillingTinyTeacher(@TempDir Path dir) throws Exception {
    try (LlamaModel teacher = LlamaModel.random(teacherConfig(), 3); LlamaModel s = student(teacher, dir)) {
      List<Double> losses = new DistillTrainer(params(30)).train(teacher, s, data(), new double[] {1, 1, 1}, null,
          (a, b, c, d) -> {});
      assertThat(losses.get(losses.size() - 1)).isLessThan(losses.get(0) * 0.7);
    }
  }

  @Test
  void shouldResumeFromCheckpointAndMatchUninterruptedRunWhenInterrupted(@TempDir Path dir) throws Exception {
    double[] w = {1, 1, 1};
    float[] uninterrupted;
    try (LlamaModel teacher = LlamaModel.random(teacherConfig(), 3); LlamaModel s = student(teacher,
        dir.resolve("a"))) {
      new DistillTrainer(params(8)).train(teacher, s, data(), w, dir.resolve("ck-a"), (a, b, c, d) -> {});
      uninterrupted = s.parameters().get("model.layers.0.mlp.up_proj.weight").toFloatArray();
    }
    Path ck = dir.resolve("ck-b");
    try (LlamaModel teacher = LlamaModel.random(teacherConfig(), 3); LlamaModel s = student(teacher,
        dir.resolve("b"))) {
      assertThatThrownBy(() -> new DistillTrainer(params(8)).train(teacher, s, data(), w, ck, (step, t, l, tps) -> {
        if (step == 4) {
          throw new InterruptedException("killed");
        }
      })).isInstanceOf(InterruptedException.class);
    }
    List<Integer> steps = new ArrayList<>();
    try (LlamaModel teacher = LlamaModel.random(teacherConfig(), 3); LlamaModel s = student(teacher,
        dir.resolve("c"))) {
      new DistillTrainer(params(8)).train(teacher, s, data(), w, ck, (step, t, l, tps) -> steps.add(step));
      assertThat(steps.get(0)).isEqualTo(4); // checkpointEvery 3: resumes after step 3
      float[] resumed = s.parameters().get("model.layers.0.mlp.up_proj.weight").toFloatArray();
      assertThat(resumed).containsExactly(uninterrupted, org.assertj.core.data.Offset.offset(1e-5f));
    }
  }

  @Test
  void shouldFailWhenDatasetEmpty() {
    try (LlamaModel teacher = LlamaModel.random(teacherConfig(), 3)) {
      assertThatThrownBy(() -> new DistillTrainer(params(2)).train(teacher, teacher, List.of(), new double[0], null,
          (a, b, c, d) -> {})).hasMessageContaining("empty");
    }
  }
}
