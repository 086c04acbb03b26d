package io.distillery.distiller;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.distillery.distiller.DistillerParams.Student;
import org.junit.jupiter.api.Test;

class DistillerParamsTest {

  @Test
  void shouldApplyDefaultsWhenParamsOmitted() {
    DistillerParams p = new DistillerParams(null, null, null, null, null, null, null, null, null, null, null, null,
        null, null);
    assertThat(p.temperature()).isEqualTo(4.0);
    assertThat(p.alpha()).isEqualTo(0.7);
    assertThat(p.reverseKl()).isFalse();
    assertThat(p.misfireWeight()).isEqualTo(2.0);
  }

  @Test
  void shouldFailWhenHeadsDoNotDivideHidden() {
    assertThatThrownBy(() -> new Student(2, 30, 4, 2, 64)).isInstanceOf(IllegalArgumentException.class)
        .hasMessageContaining("student.heads");
  }

  @Test
  void shouldFailWhenKvHeadsDoNotDivideHeads() {
    assertThatThrownBy(() -> new Student(2, 32, 4, 3, 64)).hasMessageContaining("student.kvHeads");
  }

  @Test
  void shouldFailWhenAlphaOutOfRange() {
    assertThatThrownBy(() -> new DistillerParams(null, null, null, null, null, null, 1.5, null, null, null, null,
        null, null, null)).hasMessageContaining("alpha");
  }
}
