package io.distillery.bench;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.distillery.distiller.DistillerParams.Student;
import io.distillery.distiller.student.StudentInit;
import io.distillery.model.config.LlamaConfig;
import io.distillery.model.config.LlamaTensorNames;
import io.distillery.model.train.TeacherConfig;
import io.distillery.model.train.TeacherMain;
import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class PipelineBenchTest {

  private static final LlamaConfig TEACHER = TeacherConfig.teacher().build().modelConfig();

  @TempDir Path dir;

  @Test
  void shouldRoundTheQuarterSizeStudentsMlpDownToWholeQuantizerGroups() {
    Student quarter = DistillBench.shapeFor(TEACHER, 0.25);
    for (int group : new int[] {32, 64, 128}) {
      Student s = PipelineBench.studentShape(TEACHER, 0.25, group);
      assertThat(s.intermediate() % group).as("group %d", group).isZero();
      assertThat(s.intermediate()).isLessThanOrEqualTo(quarter.intermediate());
      assertThat(s.intermediate() + group).isGreaterThan(quarter.intermediate());
      assertThat(s.hidden()).isEqualTo(quarter.hidden());
      assertThat(
              LlamaTensorNames.parameterCount(StudentInit.studentConfig(TEACHER, s))
                  / (double) LlamaTensorNames.parameterCount(TEACHER))
          .isLessThanOrEqualTo(0.25);
    }
    assertThat(PipelineBench.studentShape(TEACHER, 0.25, 32).intermediate()).isEqualTo(352);
  }

  @Test
  void shouldRefuseAGroupTheStudentCannotHold() {
    assertThatThrownBy(() -> PipelineBench.studentShape(TEACHER, 0.25, 512))
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessageContaining("--group");
    assertThatThrownBy(() -> PipelineBench.Options.parse(new String[] {"--size", "0.25"}))
        .hasMessageContaining("--teacher");
    assertThatThrownBy(
            () -> PipelineBench.Options.parse(new String[] {"--teacher", "x", "--bogus", "1"}))
        .hasMessageContaining("bogus");
  }

  /**
   * The whole chain on a tiny teacher: every stage runs, the final bytes are the quantized
   * checkpoint's weight files as they lie on disk, and the last line is computed from them.
   */
  @Test
  void shouldRunEveryStageAndCountTheFinalCheckpointsFileBytes() throws Exception {
    Path teacher = dir.resolve("teacher");
    int code =
        TeacherMain.execute(
            new String[] {
              "--out", teacher.toString(), "--steps", "30", "--layers", "1", "--hidden", "64",
              "--heads", "2", "--kv-heads", "2", "--intermediate", "128", "--batch", "16",
              "--train", "480", "--validation", "16", "--test", "40", "--eval-every", "30",
              "--threads", "1"
            },
            new PrintStream(new ByteArrayOutputStream(), true, StandardCharsets.UTF_8),
            System.err);
    assertThat(code).isZero();
    ByteArrayOutputStream printed = new ByteArrayOutputStream();
    PipelineBench.Options o = options(teacher, "0.5");
    PipelineBench.Result r =
        PipelineBench.run(
            o,
            Files.createDirectories(dir.resolve("work")),
            new PrintStream(printed, true, StandardCharsets.UTF_8));

    assertThat(r.stages().stream().map(PipelineBench.StageLine::stage))
        .containsExactly("teacher", "distill", "calibrate", "prune", "quantize", "evaluate");
    assertThat(r.teacherBytes()).isEqualTo(Files.size(teacher.resolve("model.safetensors")));
    assertThat(r.finalBytes()).isEqualTo(weightFileBytes(r.finalCheckpoint()));
    assertThat(Files.readString(r.finalCheckpoint().resolve("config.json")))
        .contains("compressed-tensors");
    long distilledBytes = r.stages().get(1).bytes();
    assertThat(r.finalBytes()).isLessThan(distilledBytes);
    assertThat(distilledBytes).isLessThan(r.teacherBytes());
    assertThat(r.sizeRatio()).isEqualTo((double) r.teacherBytes() / r.finalBytes());
    if (r.teacherEm() > 0) {
      assertThat(r.retention()).isEqualTo(r.finalEm() / r.teacherEm());
    } else {
      assertThat(r.retention()).isNaN(); // a 30-step teacher may answer nothing right
    }
    assertThat(r.line())
        .matches(
            "pipeline teacher_params=\\d+ teacher_bytes=\\d+ final_bytes=\\d+ size_ratio=\\d+\\.\\d{2}"
                + " teacher_em=\\d\\.\\d{4} final_em=\\d\\.\\d{4} retention=(\\d+\\.\\d{4}|NaN)");
    String out = printed.toString(StandardCharsets.UTF_8);
    assertThat(out).contains("pipeline_stage stage=quantize").contains("bytes: codes=");

    // a second run in the same directory is a new job: a smaller student, not the first run's
    // resumed from the distiller's work directory
    PipelineBench.Options smaller = options(teacher, "0.35");
    PipelineBench.Result again =
        PipelineBench.run(
            smaller,
            dir.resolve("work"),
            new PrintStream(new ByteArrayOutputStream(), true, StandardCharsets.UTF_8));
    assertThat(again.stages().get(1).bytes()).isLessThan(distilledBytes);
    assertThat(again.stages().get(1).note())
        .contains(
            "params="
                + LlamaTensorNames.parameterCount(
                    StudentInit.studentConfig(
                        LlamaConfig.read(teacher.resolve(LlamaConfig.FILE_NAME)),
                        PipelineBench.studentShape(
                            LlamaConfig.read(teacher.resolve(LlamaConfig.FILE_NAME)), 0.35, 16)))
                + " ");
  }

  private static long weightFileBytes(Path checkpoint) throws Exception {
    try (Stream<Path> files = Files.list(checkpoint)) {
      List<Path> weights =
          files.filter(f -> f.getFileName().toString().endsWith(".safetensors")).toList();
      assertThat(weights).isNotEmpty();
      long total = 0;
      for (Path f : weights) {
        total += Files.size(f);
      }
      return total;
    }
  }

  /** A short run of the chain on the tiny teacher, with a student of {@code size} of it. */
  private static PipelineBench.Options options(Path teacher, String size) {
    return PipelineBench.Options.parse(
        new String[] {
          "--teacher", teacher.toString(),
          "--size", size,
          "--steps", "10",
          "--batch", "8",
          "--samples", "400",
          "--eval", "40",
          "--calib-samples", "16",
          "--group", "16"
        });
  }
}
