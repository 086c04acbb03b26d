package io.distillery.evaluator.measure;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.assertj.core.data.Offset.offset;

import io.distillery.evaluator.TinyTeacher;
import io.distillery.model.CorruptCheckpointException;
import io.distillery.model.llama.LlamaModel;
import io.distillery.model.tasks.ExactMatch;
import io.distillery.model.tasks.Perplexity;
import io.distillery.model.tasks.TaskExample;
import io.distillery.model.tokenizer.ByteTokenizer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class EvaluationTest {

  @TempDir static Path dir;

  static LlamaModel teacher;
  static Path teacherDir;
  static final ByteTokenizer TOKENIZER = ByteTokenizer.instance();
  static final List<TaskExample> EXAMPLES = TinyTeacher.EXAMPLES;

  @BeforeAll
  static void train() throws Exception {
    teacherDir = TinyTeacher.checkpoint();
    teacher = LlamaModel.load(teacherDir);
  }

  @AfterAll
  static void close() {
    teacher.close();
  }

  @Test
  void shouldMatchThePlatformsExactMatchAndPerplexityOnAByteLevelModel() throws Exception {
    double exactMatch = Evaluation.exactMatch(teacher, TOKENIZER, EXAMPLES);
    assertThat(exactMatch).as("the fixture memorised the copies").isGreaterThanOrEqualTo(0.9);
    assertThat(exactMatch).isEqualTo(ExactMatch.score(teacher, TOKENIZER, EXAMPLES, 8));
    Evaluation.Scores scores = Evaluation.score(teacher, teacher, TOKENIZER, EXAMPLES, 7);
    Perplexity.Result platform = Perplexity.evaluate(teacher, TOKENIZER, EXAMPLES);
    assertThat(scores.tokens()).isEqualTo(platform.tokens()).isEqualTo(2L * EXAMPLES.size());
    assertThat(scores.perplexity()).isCloseTo(platform.perplexity(), offset(1e-4));
  }

  @Test
  void shouldAgreeFullyWithItselfAndLessWithADamagedCopy() throws Exception {
    Evaluation.Scores self = Evaluation.score(teacher, teacher, TOKENIZER, EXAMPLES, 32);
    assertThat(self.agreement()).isEqualTo(1.0);
    assertThat(self.klDivergence()).isCloseTo(0.0, offset(1e-5));

    Path int8 = TinyTeacher.saveInt8(teacher, dir.resolve("int8"));
    Path damaged = TinyTeacher.saveDamaged(teacherDir, dir.resolve("damaged"), 0.5);
    try (LlamaModel q = Evaluation.load(int8);
        LlamaModel d = Evaluation.load(damaged)) {
      Evaluation.Scores quantized = Evaluation.score(q, teacher, TOKENIZER, EXAMPLES, 32);
      Evaluation.Scores broken = Evaluation.score(d, teacher, TOKENIZER, EXAMPLES, 32);
      assertThat(quantized.agreement()).isGreaterThanOrEqualTo(0.95);
      assertThat(quantized.klDivergence()).isLessThan(0.05);
      assertThat(broken.agreement()).isLessThan(0.5);
      assertThat(broken.klDivergence()).isGreaterThan(1.0);
      assertThat(broken.perplexity()).isGreaterThan(quantized.perplexity() * 5);
    }
    assertThat(Evaluation.weightBytes(int8))
        .as("INT8 weights on disk are smaller than F32")
        .isLessThan(Evaluation.weightBytes(teacherDir));
    assertThat(Evaluation.weightBytes(teacherDir))
        .isEqualTo(Files.size(teacherDir.resolve("model.safetensors")));
  }

  @Test
  void shouldMeasureEverythingForOneModel() throws Exception {
    Evaluation evaluation = new Evaluation(TOKENIZER, EXAMPLES, EXAMPLES.subList(0, 4), 16, 3, 4);
    CandidateMetrics m = evaluation.measure("teacher", teacherDir, teacher, teacher);
    assertThat(m.examples()).isEqualTo(26);
    assertThat(m.agreement()).isEqualTo(1.0);
    assertThat(m.misfireExactMatch())
        .isEqualTo(Evaluation.exactMatch(teacher, TOKENIZER, EXAMPLES.subList(0, 4)));
    assertThat(m.parameters())
        .isEqualTo(teacher.parameters().values().stream().mapToLong(a -> a.size()).sum());
    assertThat(m.latency().prefillP50Ms())
        .isPositive()
        .isLessThanOrEqualTo(m.latency().prefillP99Ms());
    assertThat(m.latency().decodeP50Ms())
        .isPositive()
        .isLessThanOrEqualTo(m.latency().decodeP99Ms());
    assertThat(m.latency().decodeTokensPerSecond()).isPositive();
  }

  @Test
  void shouldTakeNearestRankPercentiles() {
    double[] samples = {5, 1, 4, 2, 3};
    assertThat(Latency.percentile(samples, 50)).isEqualTo(3);
    assertThat(Latency.percentile(samples, 99)).isEqualTo(5);
    assertThat(Latency.percentile(samples, 20)).isEqualTo(1);
    assertThat(Latency.percentile(new double[0], 50)).isNaN();
  }

  @Test
  void shouldRefuseADirectoryWithoutAConfig() throws Exception {
    Path empty = Files.createDirectories(dir.resolve("empty"));
    assertThatThrownBy(() -> Evaluation.load(empty))
        .isInstanceOf(CorruptCheckpointException.class)
        .hasMessageContaining("config.json");
  }
}
