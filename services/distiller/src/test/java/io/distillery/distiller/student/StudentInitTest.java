package io.distillery.distiller.student;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.assertj.core.api.Assertions.within;

import ai.djl.ndarray.NDManager;
import io.distillery.distiller.DistillerParams.Student;
import io.distillery.model.config.LlamaConfig;
import io.distillery.model.llama.LlamaModel;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class StudentInitTest {

  static LlamaConfig teacherConfig() {
    return LlamaConfig.builder()
        .vocabSize(64)
        .hiddenSize(32)
        .intermediateSize(48)
        .numHiddenLayers(4)
        .numAttentionHeads(4)
        .numKeyValueHeads(2)
        .headDim(8)
        .maxPositionEmbeddings(64)
        .build();
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
        assertThat(p.get("model.embed_tokens.weight").getShape().getShape())
            .containsExactly(64, 16);
        assertThat(p.get("model.layers.0.self_attn.q_proj.weight").getShape().getShape())
            .containsExactly(16, 16);
        assertThat(p.get("model.layers.1.self_attn.k_proj.weight").getShape().getShape())
            .containsExactly(8, 16);
        assertThat(p.get("model.layers.1.self_attn.o_proj.weight").getShape().getShape())
            .containsExactly(16, 16);
        assertThat(p.get("model.layers.1.mlp.down_proj.weight").getShape().getShape())
            .containsExactly(16, 24);
        // layer 1 of the student is teacher layer 3; entry [0][0] of its up_proj is the teacher's
        // [0][0]
        float a = p.get("model.layers.1.mlp.up_proj.weight").toFloatArray()[17];
        float b =
            teacher.parameters().get("model.layers.3.mlp.up_proj.weight").toFloatArray()[32 + 1];
        assertThat(a).isEqualTo(b);
        assertThat(logits(student, new int[][] {{1, 2, 3}})).hasSize(3 * 64);
      }
    }
  }

  @Test
  void shouldFailNamingDimensionWhenStudentLargerThanTeacher() {
    assertThatThrownBy(
            () -> StudentInit.studentConfig(teacherConfig(), new Student(4, 64, 4, 2, 48)))
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessageContaining("student.hidden");
    assertThatThrownBy(
            () -> StudentInit.studentConfig(teacherConfig(), new Student(5, 32, 4, 2, 48)))
        .hasMessageContaining("student.layers");
  }

  @Test
  void shouldPickTheTopScoresInIndexOrder() {
    assertThat(ChannelImportance.top(new float[] {0.1f, 5f, 3f, 5f, 0f}, 3))
        .containsExactly(1, 2, 3);
    assertThat(ChannelImportance.top(new float[] {2f, 2f, 1f}, 1))
        .containsExactly(0); // a tie keeps the lower index
  }

  @Test
  void shouldKeepTheBestKvGroupAndItsBestHeadWhenScored() {
    // teacher: 4 heads in 2 kv groups {0,1} {2,3}; group 1 scores 0.5 + 0.9 > group 0's 1.0 + 0.1
    int[][] kept =
        StudentInit.heads(
            teacherConfig(), new Student(2, 16, 1, 1, 24), new float[] {1f, 0.1f, 0.5f, 0.9f});
    assertThat(kept[0]).containsExactly(3);
    assertThat(kept[1]).containsExactly(1);
    assertThat(StudentInit.heads(teacherConfig(), new Student(2, 16, 2, 1, 24), null))
        .isDeepEqualTo(new int[][] {{0, 1}, {0}});
  }

  @Test
  void shouldSliceTheHighestScoringUnitsWhenImportanceIsGiven(@TempDir Path dir) throws Exception {
    try (LlamaModel teacher = LlamaModel.random(teacherConfig(), 7)) {
      float[] hidden = new float[32];
      hidden[5] = 3;
      hidden[30] = 2;
      float[][] channels = new float[4][48];
      channels[3][47] = 1; // teacher layer 3 = student layer 1
      float[][] heads = {{1, 0, 0, 0}, {1, 0, 0, 0}, {1, 0, 0, 0}, {0, 0, 0, 1}};
      StudentInit.write(
          teacher, new Student(2, 2, 1, 1, 1), dir, new ChannelImportance(hidden, heads, channels));
      try (LlamaModel student = LlamaModel.load(dir)) {
        var p = student.parameters();
        float[] embed = teacher.parameters().get("model.embed_tokens.weight").toFloatArray();
        float[] kept = p.get("model.embed_tokens.weight").toFloatArray();
        assertThat(kept[0]).isEqualTo(embed[5]); // row 0, columns {5, 30}
        assertThat(kept[1]).isEqualTo(embed[30]);
        float[] up = teacher.parameters().get("model.layers.3.mlp.up_proj.weight").toFloatArray();
        assertThat(p.get("model.layers.1.mlp.up_proj.weight").toFloatArray())
            .containsExactly(up[47 * 32 + 5], up[47 * 32 + 30]);
        float[] v =
            teacher.parameters().get("model.layers.3.self_attn.v_proj.weight").toFloatArray();
        // student layer 1 keeps teacher head 3, i.e. kv group 1: v rows 8..15
        assertThat(p.get("model.layers.1.self_attn.v_proj.weight").toFloatArray()[0])
            .isEqualTo(v[8 * 32 + 5]);
      }
    }
  }

  @Test
  void shouldMeasureImportanceOfEveryUnitFromActivations() {
    try (LlamaModel teacher = LlamaModel.random(teacherConfig(), 7)) {
      ChannelImportance imp =
          ChannelImportance.measure(
              teacher, java.util.List.of(new int[] {1, 5, 9}, new int[] {2, 3}));
      assertThat(imp.hidden()).hasSize(32);
      assertThat(imp.heads()).hasNumberOfRows(4);
      assertThat(imp.heads()[2]).hasSize(4);
      assertThat(imp.channels()[3]).hasSize(48);
      for (float[] scores :
          new float[][] {
            imp.hidden(), imp.heads()[0], imp.heads()[3], imp.channels()[0], imp.channels()[3]
          }) {
        for (float v : scores) {
          assertThat(v).isPositive();
        }
      }
    }
  }
}
