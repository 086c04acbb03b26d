package io.distillery.bench;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.distillery.distiller.DistillerParams.Student;
import io.distillery.distiller.student.StudentInit;
import io.distillery.model.config.LlamaConfig;
import io.distillery.model.config.LlamaTensorNames;
import io.distillery.model.train.TeacherConfig;
import org.junit.jupiter.api.Test;

class DistillBenchTest {

  private static final LlamaConfig TEACHER = TeacherConfig.teacher().build().modelConfig();
  private static final long TEACHER_PARAMS = LlamaTensorNames.parameterCount(TEACHER);

  private static long params(Student s) {
    return LlamaTensorNames.parameterCount(StudentInit.studentConfig(TEACHER, s));
  }

  @Test
  void shouldPickTheWidestMlpWithinTheBudgetWhenSizeIsAFraction() {
    for (double fraction : new double[] {0.5, 0.25, 0.125}) {
      Student s = DistillBench.shapeFor(TEACHER, fraction);
      long budget = (long) Math.floor(fraction * TEACHER_PARAMS);
      assertThat(params(s)).as("size %s", fraction).isLessThanOrEqualTo(budget);
      Student wider =
          new Student(s.layers(), s.hidden(), s.heads(), s.kvHeads(), s.intermediate() + 1);
      assertThat(params(wider)).as("size %s one channel wider", fraction).isGreaterThan(budget);
      assertThat(s.layers()).isEqualTo(TEACHER.numHiddenLayers());
    }
    Student quarter = DistillBench.shapeFor(TEACHER, 0.25);
    assertThat(quarter.hidden()).isEqualTo(128);
    assertThat(quarter.heads()).isEqualTo(2);
  }

  @Test
  void shouldKeepTheHiddenWidthWhenTheShapeIsTheStructuredPrunersOne() {
    int[] keep = DistillBench.structuredShape(TEACHER, 0.25);
    assertThat(keep[0]).isEqualTo(1);
    Student s = new Student(TEACHER.numHiddenLayers(), TEACHER.hiddenSize(), 1, 1, keep[1]);
    long budget = (long) Math.floor(0.25 * TEACHER_PARAMS);
    assertThat(params(s)).isLessThanOrEqualTo(budget);
    assertThat(params(new Student(s.layers(), s.hidden(), 1, 1, keep[1] + 1)))
        .isGreaterThan(budget);
  }

  @Test
  void shouldRefuseWhenNoStudentFitsTheFraction() {
    assertThatThrownBy(() -> DistillBench.shapeFor(TEACHER, 0.001))
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessageContaining("0.001");
    assertThatThrownBy(() -> DistillBench.structuredShape(TEACHER, 0.05))
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessageContaining("hidden width");
  }
}
