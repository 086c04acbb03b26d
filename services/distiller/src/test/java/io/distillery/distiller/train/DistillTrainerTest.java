package io.distillery.distiller.train;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import ai.djl.pytorch.jni.JniUtils;
import io.distillery.distiller.DistillerParams;
import io.distillery.distiller.DistillerParams.Student;
import io.distillery.distiller.student.StudentInit;
import io.distillery.distiller.teacher.TeacherLogitCache;
import io.distillery.distiller.teacher.TopKLogits;
import io.distillery.model.config.LlamaConfig;
import io.distillery.model.llama.LlamaModel;
import io.distillery.model.tasks.TaskExample;
import io.distillery.stage.StageParams;
import io.distillery.stage.UnusableInput;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.assertj.core.data.Offset;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class DistillTrainerTest {

  static final double[] W = {1, 1, 1};

  static LlamaConfig teacherConfig() {
    return LlamaConfig.builder()
        .vocabSize(260)
        .hiddenSize(32)
        .intermediateSize(48)
        .numHiddenLayers(2)
        .numAttentionHeads(4)
        .numKeyValueHeads(2)
        .headDim(8)
        .maxPositionEmbeddings(64)
        .build();
  }

  static List<TaskExample> data() {
    return List.of(
        new TaskExample("t", "1+1=", "2"),
        new TaskExample("t", "2+2=", "4"),
        new TaskExample("t", "3+1=", "4"));
  }

  static DistillerParams params(String extra) throws Exception {
    return StageParams.bind(
        "distiller",
        "{\"batch\":4,\"seqLen\":32,\"lr\":0.01,\"temperature\":2.0,\"alpha\":1.0,"
            + "\"checkpointEvery\":3,\"progressEvery\":1,\"seed\":5"
            + extra
            + "}",
        DistillerParams.class);
  }

  static LlamaModel student(LlamaModel teacher, Path dir) throws Exception {
    StudentInit.write(teacher, new Student(1, 16, 2, 1, 24), dir);
    return LlamaModel.load(dir);
  }

  @Test
  void shouldLowerKdLossWhenDistillingTinyTeacher(@TempDir Path dir) throws Exception {
    List<Double> losses = new ArrayList<>();
    try (LlamaModel teacher = LlamaModel.random(teacherConfig(), 3);
        LlamaModel s = student(teacher, dir)) {
      new DistillTrainer(params(",\"steps\":30"))
          .train(teacher, s, data(), W, List.of(), null, g -> losses.add(g.loss()));
    }
    assertThat(losses).hasSize(30);
    assertThat(losses.getLast()).isLessThan(losses.getFirst() * 0.7);
  }

  static TopKLogits cache(
      DistillerParams p, LlamaModel teacher, List<TaskExample> validation, int k) throws Exception {
    List<TaskExample> covered = new DistillTrainer(p).cachedExamples(data(), validation);
    return TeacherLogitCache.computeWhole(teacher, covered, k, 2, "test", (d, t, s) -> {});
  }

  @Test
  void shouldGiveTheFullLogitLossWhenTheCacheKeepsTheWholeVocabulary(@TempDir Path dir)
      throws Exception {
    DistillerParams p = params(",\"steps\":2,\"alpha\":0.7,\"evalEvery\":1");
    List<TaskExample> validation = List.of(new TaskExample("t", "4+4=", "8"));
    List<DistillTrainer.Progress> live = new ArrayList<>();
    List<DistillTrainer.Progress> cached = new ArrayList<>();
    try (LlamaModel teacher = LlamaModel.random(teacherConfig(), 3);
        LlamaModel a = student(teacher, dir.resolve("a"));
        LlamaModel b = student(teacher, dir.resolve("b"))) {
      new DistillTrainer(p).train(teacher, a, data(), W, validation, null, live::add);
      TopKLogits all = cache(p, teacher, validation, 260);
      assertThat(all.complete()).isTrue();
      new DistillTrainer(p).trainFromCache(all, b, data(), W, validation, null, cached::add);
    }
    assertThat(cached).hasSameSizeAs(live).hasSize(2);
    for (int i = 0; i < live.size(); i++) {
      assertThat(cached.get(i).loss()).isCloseTo(live.get(i).loss(), Offset.offset(1e-5));
      assertThat(cached.get(i).validationLoss())
          .isCloseTo(live.get(i).validationLoss(), Offset.offset(1e-5));
    }
  }

  @Test
  void shouldLowerTheLossWhenTrainingFromTheTeachersTopK(@TempDir Path dir) throws Exception {
    DistillerParams p = params(",\"steps\":30");
    List<Double> losses = new ArrayList<>();
    try (LlamaModel teacher = LlamaModel.random(teacherConfig(), 3);
        LlamaModel s = student(teacher, dir)) {
      TopKLogits top = cache(p, teacher, List.of(), 16);
      new DistillTrainer(p)
          .trainFromCache(top, s, data(), W, List.of(), null, g -> losses.add(g.loss()));
    }
    assertThat(losses).hasSize(30);
    assertThat(losses.getLast()).isLessThan(losses.getFirst() * 0.7);
  }

  @Test
  void shouldRefuseACacheOfOtherExamples(@TempDir Path dir) throws Exception {
    DistillerParams p = params(",\"steps\":2");
    try (LlamaModel teacher = LlamaModel.random(teacherConfig(), 3);
        LlamaModel s = student(teacher, dir)) {
      TopKLogits top = cache(p, teacher, List.of(), 16);
      assertThatThrownBy(
              () ->
                  new DistillTrainer(p)
                      .trainFromCache(
                          top,
                          s,
                          data().subList(0, 2),
                          new double[] {1, 1},
                          List.of(),
                          null,
                          g -> {}))
          .isInstanceOf(IllegalArgumentException.class)
          .hasMessageContaining("the teacher cache covers 3 examples");
    }
  }

  @Test
  void shouldResumeFromCheckpointAndMatchUninterruptedRunWhenInterrupted(@TempDir Path dir)
      throws Exception {
    // one intra-op thread: with several, kernels sum in varying order, and AdamW turns that noise
    // in
    // near-zero gradients into steps of up to lr (the two runs differed by ~5e-3 once in CI)
    int threads = JniUtils.getNumThreads();
    JniUtils.setNumThreads(1);
    try {
      resumeAndCompare(dir);
    } finally {
      JniUtils.setNumThreads(threads);
    }
  }

  private static void resumeAndCompare(Path dir) throws Exception {
    DistillerParams p = params(",\"steps\":8");
    float[] uninterrupted;
    try (LlamaModel teacher = LlamaModel.random(teacherConfig(), 3);
        LlamaModel s = student(teacher, dir.resolve("a"))) {
      new DistillTrainer(p).train(teacher, s, data(), W, List.of(), dir.resolve("ck-a"), g -> {});
      uninterrupted = s.parameters().get("model.layers.0.mlp.up_proj.weight").toFloatArray();
    }
    Path ck = dir.resolve("ck-b");
    try (LlamaModel teacher = LlamaModel.random(teacherConfig(), 3);
        LlamaModel s = student(teacher, dir.resolve("b"))) {
      assertThatThrownBy(
              () ->
                  new DistillTrainer(p)
                      .train(
                          teacher,
                          s,
                          data(),
                          W,
                          List.of(),
                          ck,
                          g -> {
                            if (g.step() == 4) {
                              throw new InterruptedException("killed");
                            }
                          }))
          .isInstanceOf(InterruptedException.class);
    }
    assertThat(DistillTrainer.checkpointStep(ck)).isEqualTo(3);
    List<DistillTrainer.Progress> reports = new ArrayList<>();
    try (LlamaModel teacher = LlamaModel.random(teacherConfig(), 3);
        LlamaModel s = student(teacher, dir.resolve("c"))) {
      DistillTrainer.Result r =
          new DistillTrainer(p).train(teacher, s, data(), W, List.of(), ck, reports::add);
      assertThat(r.resumedFrom()).isEqualTo(3);
      assertThat(reports.getFirst().resumed()).isTrue();
      assertThat(reports.getFirst().step()).isEqualTo(3); // checkpointEvery 3: resumes after step 3
      assertThat(reports.get(1).step()).isEqualTo(4);
      float[] resumed = s.parameters().get("model.layers.0.mlp.up_proj.weight").toFloatArray();
      // the runs agree to float noise, while restarting from step 0 or from fresh optimizer moments
      // moves weights by ~lr = 1e-2
      assertThat(resumed).containsExactly(uninterrupted, Offset.offset(2e-4f));
    }
  }

  @Test
  void shouldRefuseAsUnusableInputNamingBothShapesWhenTheCheckpointDoesNotFitTheStudent(
      @TempDir Path dir) throws Exception {
    DistillerParams p = params(",\"steps\":3");
    Path ck = dir.resolve("ck");
    try (LlamaModel teacher = LlamaModel.random(teacherConfig(), 3);
        LlamaModel s = student(teacher, dir.resolve("a"))) {
      new DistillTrainer(p).train(teacher, s, data(), W, List.of(), ck, g -> {});
    }
    // the same checkpoint directory, a student with a wider MLP (intermediate 32 instead of 24):
    // retrying cannot help
    try (LlamaModel teacher = LlamaModel.random(teacherConfig(), 3)) {
      StudentInit.write(teacher, new Student(1, 16, 2, 1, 32), dir.resolve("b"));
      try (LlamaModel wider = LlamaModel.load(dir.resolve("b"))) {
        assertThatThrownBy(
                () ->
                    new DistillTrainer(p).train(teacher, wider, data(), W, List.of(), ck, g -> {}))
            .isInstanceOf(UnusableInput.class)
            .hasMessageContaining("does not fit the student")
            .hasMessageContaining("[24, 16]")
            .hasMessageContaining("[32, 16]");
      }
    }
  }

  @Test
  void shouldStopEarlyWhenTheValidationLossStopsImproving(@TempDir Path dir) throws Exception {
    // lr 1e-12 leaves the float32 weights unchanged, so the validation loss never drops below its
    // first value
    DistillerParams p = params(",\"steps\":50,\"lr\":1e-12,\"evalEvery\":2,\"patience\":2");
    try (LlamaModel teacher = LlamaModel.random(teacherConfig(), 3);
        LlamaModel s = student(teacher, dir)) {
      DistillTrainer.Result r =
          new DistillTrainer(p).train(teacher, s, data(), W, data(), null, g -> {});
      assertThat(r.stoppedEarly()).isTrue();
      assertThat(r.steps())
          .isEqualTo(6); // evaluations at 2 (best), 4 and 6 (no better): patience 2 spent
      assertThat(r.validationLoss()).isFinite();
    }
  }

  @Test
  void shouldKeepTheAnswerAndCutThePromptWhenASequenceIsTooLong() {
    TaskExample e = new TaskExample("t", "abcdefgh=", "xyz");
    assertThat(DistillTrainer.truncate(e, 100)).isSameAs(e);
    assertThat(DistillTrainer.truncate(e, 8))
        .isEqualTo(new TaskExample("t", "gh=", "xyz")); // 1 + 3 + 3 + 1
    assertThat(DistillTrainer.truncate(e, 4)).isEqualTo(new TaskExample("t", "=", "x"));
  }

  @Test
  void shouldDrawBatchesInProportionToTheWeights() throws Exception {
    DistillTrainer t = new DistillTrainer(params(",\"batch\":1000"));
    List<TaskExample> batch =
        t.batch(data(), new double[] {1, 5, 6}, 7); // cumulative: weights 1, 4, 1
    long second = batch.stream().filter(e -> e.prompt().equals("2+2=")).count();
    assertThat(second).isBetween(600L, 730L); // expected 667
    assertThat(t.batch(data(), new double[] {1, 5, 6}, 7)).isEqualTo(batch);
  }

  @Test
  void shouldFailWhenDatasetEmpty() throws Exception {
    DistillerParams p = params(",\"steps\":2");
    try (LlamaModel teacher = LlamaModel.random(teacherConfig(), 3)) {
      assertThatThrownBy(
              () ->
                  new DistillTrainer(p)
                      .train(teacher, teacher, List.of(), new double[0], List.of(), null, g -> {}))
          .hasMessageContaining("empty");
    }
  }
}
