package io.distillery.distiller;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.distillery.distiller.DistillerParams.Student;
import io.distillery.model.config.LlamaConfig;
import io.distillery.stage.StageException;
import io.distillery.stage.StageParams;
import org.junit.jupiter.api.Test;

class DistillerParamsTest {

  static DistillerParams bind(String json) throws StageException {
    return StageParams.bind("distiller", json, DistillerParams.class);
  }

  @Test
  void shouldApplyDefaultsWhenParamsOmitted() throws Exception {
    DistillerParams p = bind("{}");
    assertThat(p.temperature()).isEqualTo(4.0);
    assertThat(p.alpha()).isEqualTo(0.7);
    assertThat(p.reverseKl()).isFalse();
    assertThat(p.misfireWeight()).isEqualTo(4.0);
    assertThat(p.decoding()).isEqualTo("greedy");
    assertThat(p.labels()).isTrue();
    assertThat(p.warmup()).isEqualTo(10); // steps / 10
  }

  @Test
  void shouldFailNamingTheKindWhenATaskKindIsUnknown() throws Exception {
    assertThat(bind("{\"tasks\":[\"copy\",\"rev\"]}").tasks()).containsExactly("copy", "rev");
    assertThatThrownBy(() -> bind("{\"tasks\":[\"copy\",\"poetry\"]}"))
        .hasMessageContaining("poetry");
    assertThatThrownBy(() -> bind("{\"tasks\":[]}")).hasMessageContaining("tasks");
  }

  @Test
  void shouldFailNamingTheParamWhenHeadsDoNotDivideHidden() {
    assertThatThrownBy(
            () ->
                bind(
                    "{\"student\":{\"layers\":2,\"hidden\":30,\"heads\":4,\"kvHeads\":2,"
                        + "\"intermediate\":64}}"))
        .isInstanceOf(StageException.class)
        .hasMessageContaining("student.heads 4 does not " + "divide student.hidden 30");
  }

  @Test
  void shouldFailWhenKvHeadsDoNotDivideHeads() {
    assertThatThrownBy(() -> new Student(2, 32, 4, 3, 64)).hasMessageContaining("student.kvHeads");
  }

  @Test
  void shouldNameTheDimensionWhenTheStudentIsLargerThanTheTeacher() {
    LlamaConfig teacher =
        LlamaConfig.builder()
            .vocabSize(260)
            .hiddenSize(32)
            .intermediateSize(48)
            .numHiddenLayers(2)
            .numAttentionHeads(4)
            .numKeyValueHeads(2)
            .headDim(8)
            .maxPositionEmbeddings(64)
            .build();
    assertThatThrownBy(() -> new Student(2, 64, 4, 2, 48).requireFits(teacher))
        .hasMessage("student.hidden 64 is larger than the teacher's 32");
    assertThatThrownBy(() -> new Student(3, 32, 4, 2, 48).requireFits(teacher))
        .hasMessage("student.layers 3 is larger than the teacher's 2");
  }

  @Test
  void shouldFailWhenAlphaOutOfRange() {
    assertThatThrownBy(() -> bind("{\"alpha\":1.5}"))
        .hasMessageContaining("alpha must be in [0,1]");
  }

  @Test
  void shouldRejectUnknownSourceDecodingAndBothStudentKinds() {
    assertThatThrownBy(() -> bind("{\"source\":\"web\"}"))
        .hasMessageContaining("source must be \"tasks\"");
    assertThatThrownBy(() -> bind("{\"decoding\":\"beam\"}"))
        .hasMessageContaining("decoding must be greedy or sampled");
    assertThatThrownBy(
            () ->
                bind(
                    "{\"studentUri\":\"/m\",\"student\":{\"layers\":1,\"hidden\":8,\"heads\":2,"
                        + "\"kvHeads\":1,\"intermediate\":8}}"))
        .hasMessageContaining("student and studentUri exclude each other");
    assertThatThrownBy(() -> bind("{\"steps\":10,\"warmup\":11}"))
        .hasMessageContaining("warmup must be in [0, steps=10]");
    assertThatThrownBy(() -> bind("{\"seqLen\":2}"))
        .hasMessageContaining("seqLen must be at least 3");
  }
}
