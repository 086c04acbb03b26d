package io.distillery.it;

import static org.assertj.core.api.Assertions.assertThat;

import io.distillery.model.tasks.TaskKind;
import io.distillery.model.tasks.TaskSettings;
import io.distillery.model.train.TeacherConfig;
import io.distillery.model.train.TeacherReport;
import io.distillery.model.train.TeacherTrainer;
import io.distillery.schemas.run.RunState;
import io.distillery.schemas.run.RunStatus;
import io.distillery.schemas.run.StageState;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * Issue 5 on the real broker: distiller -> calibrator -> quantizer (w4-gptq) -> evaluator turns a
 * trained teacher into a checkpoint at least 10x smaller in weight bytes (the evaluator's {@code
 * weightBytesRatio} gate enforces it), and the student's retention of the teacher's exact match is
 * in RunState.
 */
class DistillQuantizeIT {

  static Cluster.Services services;
  static Path teacher;
  static TeacherReport trained;

  static final String RECIPE =
      """
      name: distill-w4
      timeout: 5m
      stages:
        distill: { stage: distiller, params: { student: { layers: 2, hidden: 64, heads: 4, kvHeads: 2, intermediate: 128 }, dataset: "%s", steps: 300, batch: 16, seqLen: 32, lr: 0.003, temperature: 2.0, evalSamples: 32, patience: 100 } }
        calib:   { stage: calibrator, after: [distill], params: { samples: 16, seqLen: 32 } }
        quant:   { stage: quantizer, after: [distill, calib], params: { scheme: w4-gptq, groupSize: 32, exclude: [lm_head] } }
        eval:    { stage: evaluator, after: [quant], params: { samples: 60, gates: { weightBytesRatio: 0.1 } } }
      """;

  @BeforeAll
  static void start() throws Exception {
    Cluster.ensureStarted();
    services =
        Cluster.services(true, "distill-w4", "distiller", "calibrator", "quantizer", "evaluator");
    teacher = Cluster.newDir("copy-teacher-128");
    TeacherConfig config =
        TeacherConfig.teacher()
            .layers(2)
            .hidden(128)
            .heads(4)
            .kvHeads(2)
            .intermediate(512)
            .steps(500)
            .batch(32)
            .learningRate(3e-3)
            .warmupSteps(50)
            .threads(1)
            .seed(3)
            .tasks(List.of(TaskKind.COPY))
            .taskSettings(TaskSettings.defaults().withAlphabet("abcdefghijkl").withTextLength(2, 3))
            .trainExamples(600)
            .validationExamples(200)
            .testExamples(60)
            .evalEvery(0)
            .build();
    trained = new TeacherTrainer(config, p -> {}).trainAndSave(teacher);
  }

  @AfterAll
  static void stop() {
    services.close();
  }

  @Test
  void shouldMakeAStudentTenTimesSmallerInWeightBytesAndReportItsRetention() throws Exception {
    // the distiller's prompts: the teacher's validation split (its own task settings), held apart
    // from the test split
    String recipe = RECIPE.formatted(teacher.resolve("validation.jsonl"));
    var reg =
        Cluster.cli(
            "register",
            "--model",
            teacher.toString(),
            "--recipe",
            Cluster.recipe(recipe).toString());
    assertThat(reg.code()).as(reg.err()).isZero();
    RunState done =
        Cluster.awaitRun(
            reg.out().trim(), r -> r.getStatus() != RunStatus.RUNNING, Duration.ofMinutes(5));
    assertThat(done.getStatus())
        .as(String.valueOf(done.getReason()))
        .isEqualTo(RunStatus.SUCCEEDED);

    Map<String, Double> distill = stage(done, "distill").getMetrics();
    assertThat(distill.get("studentParams") / distill.get("teacherParams"))
        .as("student params / teacher params")
        .isLessThanOrEqualTo(0.25);
    Map<String, Double> eval = stage(done, "eval").getMetrics();
    System.out.printf(
        "distill-w4: teacher exact_match=%.3f params=%d; student+w4 exact_match=%.3f retention=%.3f"
            + " weightBytesRatio=%.4f%n",
        trained.exactMatch(),
        trained.parameters(),
        eval.get("exactMatch"),
        eval.get("retention"),
        eval.get("weightBytesRatio"));
    assertThat(eval.get("weightBytesRatio"))
        .as("candidate / teacher weight bytes")
        .isLessThanOrEqualTo(0.1);
    assertThat(eval).containsKey("retention");
    assertThat(eval.get("retention"))
        .as("the student learned the task from the teacher")
        .isGreaterThan(0.5);
  }

  static StageState stage(RunState r, String node) {
    return r.getStages().stream().filter(s -> s.getNode().equals(node)).findFirst().orElseThrow();
  }
}
