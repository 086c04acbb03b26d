package io.distillery.model.train;

import static org.assertj.core.api.Assertions.assertThat;

import io.distillery.model.llama.LlamaModel;
import io.distillery.model.tasks.ExactMatch;
import io.distillery.model.tasks.Perplexity;
import io.distillery.model.tasks.TaskKind;
import io.distillery.model.tasks.TaskSettings;
import io.distillery.model.tasks.TaskSuite;
import io.distillery.model.tokenizer.ByteTokenizer;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class TeacherTrainerTest {

  @TempDir Path dir;

  /** Copy of 2-3 letters a-z: chance exact match is below 1/676. */
  private static TeacherConfig tinyCopy(int steps) {
    return TeacherConfig.teacher()
        .layers(2)
        .hidden(64)
        .heads(4)
        .kvHeads(2)
        .intermediate(128)
        .steps(steps)
        .batch(32)
        .learningRate(3e-3)
        .warmupSteps(20)
        .weightDecay(0.01)
        .seed(3)
        .threads(1)
        .tasks(List.of(TaskKind.COPY))
        .taskSettings(TaskSettings.defaults().withTextLength(2, 3))
        .trainExamples(4000)
        .validationExamples(0)
        .testExamples(100)
        .build();
  }

  @Test
  void shouldLearnToCopyWhenTrainedFromScratch() throws IOException {
    TeacherConfig config = tinyCopy(400);
    List<TrainingProgress> progress = new ArrayList<>();
    TeacherTrainer trainer = new TeacherTrainer(config, progress::add);
    TaskSuite suite = trainer.suite();
    try (TrainedTeacher trained = trainer.train(suite, null)) {
      TeacherReport report = trained.report();
      assertThat(progress).hasSize(400);
      assertThat(progress.getLast().tokensPerSecond()).isPositive();
      assertThat(report.firstLoss()).as("untrained: about log(vocab)").isGreaterThan(4.5);
      assertThat(report.finalLoss()).as("loss falls a lot").isLessThan(report.firstLoss() / 5);
      assertThat(report.exactMatch())
          .as("held-out copy far above chance (< 0.0015)")
          .isGreaterThan(0.5);
      assertThat(report.exactMatchByTask()).containsOnlyKeys("copy");
      assertThat(report.perplexity()).isLessThan(2.0);
      assertThat(report.parameters())
          .isEqualTo(trained.model().parameters().values().stream().mapToLong(p -> p.size()).sum());

      trained.model().save(dir, io.distillery.model.safetensors.DType.F32);
      ByteTokenizer.instance().save(dir);
      try (LlamaModel reloaded = LlamaModel.load(dir)) {
        ByteTokenizer tokenizer = ByteTokenizer.load(dir);
        assertThat(ExactMatch.score(reloaded, tokenizer, suite.test(), 5))
            .as("checkpoint reproduces the score")
            .isEqualTo(report.exactMatch());
        assertThat(Perplexity.evaluate(reloaded, tokenizer, suite.test()).perplexity())
            .isCloseTo(report.perplexity(), org.assertj.core.data.Offset.offset(1e-3));
      }
      assertThat(Files.exists(dir.resolve("config.json"))).isTrue();
    }
  }
}
