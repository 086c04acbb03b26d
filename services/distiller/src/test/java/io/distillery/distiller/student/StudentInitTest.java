package io.distillery.distiller.student;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.assertj.core.api.Assertions.within;

import ai.djl.ndarray.NDManager;
import io.distillery.distiller.DistillerParams.Student;
import io.distillery.platform.model.config.LlamaConfig;
import io.distillery.platform.model.llama.LlamaModel;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class StudentInitTest {

  static LlamaConfig teacherConfig() {
    return LlamaConfig.builder().vocabSize(64).hiddenSize(32).intermediateSize(48).numHiddenLayers(4)
        .numAttentionHeads(4).numKeyValueHeads(2).headDim(8).maxPositionEmbeddings(64).build();
  }

  static float[] logits(LlamaModel m, int[][] ids) {
    try (NDManager scope = m.manager().newSubManager()) {
      return m.forward(scope, ids).toFloatArray();
    }
  }

  @Test
  void shouldSelectEvenlySpacedLayersWhenShrinkingDepth() {
    assertThat(StudentInit.selectLayers(4, 2)).containsExactly(0, 3);
    assertThat(StudentInit.selectLayers(5, 3)).containsExactly(0, 2, 4);
    assertThat(StudentInit.selectLayers(4, 1)).containsExactly(0);
  }

  @Test
  void shouldReproduceTeacherLogitsWhenStudentHasTeacherShape(@TempDir Path dir) throws Exception {
    try (LlamaModel teacher = LlamaModel.random(teacherConfig(), 7)) {
      StudentInit.write(teacher, new Student(4, 32, 4, 2, 48), dir);
      try (LlamaModel student = LlamaModel.load(dir)) {
        int[][] ids = {{1, 5, 9, 13, 2, 7}};
        float[] t = logits(teacher, ids);
        float[] s = logits(student, ids);
        assertThat(s).hasSize(t.length);
        for (int i = 0; i < t.length; i++) {
          assertThat(s[i]).isCloseTo(t[i], within(1e-4f));
        }
      }
    }
  }

  @Test
  void shouldSliceShapesWhenStudentIsSmaller(@TempDir Path dir) throws Exception {
    try (LlamaModel teacher = LlamaModel.random(teacherConfig(), 7)) {
      LlamaConfig sc = StudentInit.write(teacher, new Student(2, 16, 2, 1, 24), dir);
      try (LlamaModel student = LlamaModel.load(dir)) {
        assertThat(student.config()).isEqualTo(sc);
        var p = student.parameters();
        assertThat(p.get("model.embed_tokens.weight").getShape().getShape()).containsExactly(64, 16);
        assertThat(p.get("model.layers.0.self_attn.q_proj.weight").getShape().getShape()).containsExactly(16, 16);
        assertThat(p.get("model.layers.1.self_attn.k_proj.weight").getShape().getShape()).containsExactly(8, 16);
        assertThat(p.get("model.layers.1.self_attn.o_proj.weight").getShape().getShape()).containsExactly(16, 16);
        assertThat(p.get("model.layers.1.mlp.down_proj.weight").getShape().getShape()).containsExactly(16, 24);
        // layer 1 of the student is teacher layer 3; entry [0][0] of its up_proj is the teacher's [0][0]
        float a = p.get("model.layers.1.mlp.up_proj.weight").toFloatArray()[17];
        float b = teacher.parameters().get("model.layers.3.mlp.up_proj.weight").toFloatArray()[32 + 1];
        assertThat(a).isEqualTo(b);
        assertThat(logits(student, new int[][] {{1, 2, 3}})).hasSize(3 * 64);
      }
    }
  }

  @Test
  void shouldFailNamingDimensionWhenStudentLargerThanTeacher() {
    assertThatThrownBy(() -> StudentInit.studentConfig(teacherConfig(), new Student(4, 64, 4, 2, 48)))
        .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("student.hidden");
    assertThatThrownBy(() -> StudentInit.studentConfig(teacherConfig(), new Student(5, 32, 4, 2, 48)))
        .hasMessageContaining("student.layers");
  }
}
