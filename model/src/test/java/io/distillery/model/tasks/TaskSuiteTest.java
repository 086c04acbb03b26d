package io.distillery.model.tasks;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class TaskSuiteTest {

  @TempDir Path dir;

  @Test
  void shouldGiveExactAnswersForEveryTaskKind() {
    TaskGenerator generator = new TaskGenerator(TaskSettings.defaults(), 5);
    for (int i = 0; i < 200; i++) {
      TaskExample add = generator.next(TaskKind.ADD);
      String[] addends = add.prompt().substring(0, add.prompt().length() - 1).split("\\+");
      assertThat(Long.parseLong(add.answer()))
          .isEqualTo(Long.parseLong(addends[0]) + Long.parseLong(addends[1]));
      assertThat(addends).allSatisfy(addend -> assertThat(addend).hasSize(3)); // zero-padded: 007
      assertThat(add.answer()).hasSize(4);

      TaskExample copy = generator.next(TaskKind.COPY);
      assertThat(copy.prompt()).isEqualTo("copy:" + copy.answer() + "=");
      assertThat(copy.answer()).hasSizeBetween(3, 6).matches("[a-z]+");

      TaskExample reverse = generator.next(TaskKind.REVERSE);
      assertThat(reverse.prompt())
          .isEqualTo("rev:" + new StringBuilder(reverse.answer()).reverse() + "=");

      TaskExample recall = generator.next(TaskKind.RECALL);
      assertThat(recall.prompt()).matches("(k[1-9][a-z];){3}\\?k[1-9]");
      String key = recall.prompt().substring(recall.prompt().indexOf('?') + 1);
      assertThat(recall.prompt()).contains(key + recall.answer() + ";");

      TaskExample sort = generator.next(TaskKind.SORT);
      char[] digits = sort.prompt().substring(5, sort.prompt().length() - 1).toCharArray();
      Arrays.sort(digits);
      assertThat(sort.answer()).isEqualTo(new String(digits));
    }
  }

  @Test
  void shouldMatchHandCheckedExamples() {
    assertThat(new TaskExample("add", "012+345=", "0357").answer()).isEqualTo("0" + (12 + 345));
    TaskGenerator oneDigit = new TaskGenerator(TaskSettings.defaults().withAdditionDigits(1), 3);
    for (int i = 0; i < 50; i++) {
      TaskExample add = oneDigit.next(TaskKind.ADD);
      int a = add.prompt().charAt(0) - '0';
      int b = add.prompt().charAt(2) - '0';
      assertThat(add.prompt()).matches("[0-9]\\+[0-9]=");
      assertThat(add.answer())
          .isEqualTo((a + b < 10 ? "0" : "") + (a + b)); // 4+5= -> 09, 7+8= -> 15
    }
    TaskSettings oneLetter = TaskSettings.defaults().withAlphabet("a").withTextLength(2, 2);
    TaskGenerator generator = new TaskGenerator(oneLetter, 1);
    assertThat(generator.next(TaskKind.REVERSE)).isEqualTo(new TaskExample("rev", "rev:aa=", "aa"));
    assertThat(generator.next(TaskKind.COPY)).isEqualTo(new TaskExample("copy", "copy:aa=", "aa"));
  }

  @Test
  void shouldSplitDisjointlyAndDeterministicallyForASeed() {
    List<TaskKind> kinds = List.of(TaskKind.values());
    TaskSuite suite = TaskSuite.generate(kinds, TaskSettings.defaults(), 2000, 200, 300, 42);
    assertThat(suite.train()).hasSize(2000);
    assertThat(suite.validation()).hasSize(200);
    assertThat(suite.test()).hasSize(300);
    Set<String> trainPrompts = prompts(suite.train());
    Set<String> validationPrompts = prompts(suite.validation());
    Set<String> testPrompts = prompts(suite.test());
    assertThat(trainPrompts)
        .hasSize(2000)
        .doesNotContainAnyElementsOf(testPrompts)
        .doesNotContainAnyElementsOf(validationPrompts);
    assertThat(validationPrompts).doesNotContainAnyElementsOf(testPrompts);
    assertThat(suite.test().stream().map(TaskExample::task).distinct())
        .containsExactlyInAnyOrder("add", "copy", "rev", "kv", "sort");

    assertThat(TaskSuite.generate(kinds, TaskSettings.defaults(), 2000, 200, 300, 42))
        .isEqualTo(suite);
    assertThat(TaskSuite.generate(kinds, TaskSettings.defaults(), 2000, 200, 300, 43).test())
        .isNotEqualTo(suite.test());
  }

  @Test
  void shouldWeightTheTrainSplitByTheMixAndKeepTestAndValidationEven() {
    TaskSuite suite =
        TaskSuite.generate(
            List.of(TaskKind.ADD, TaskKind.COPY),
            List.of(TaskKind.ADD, TaskKind.ADD, TaskKind.ADD, TaskKind.COPY),
            TaskSettings.defaults(),
            400,
            40,
            40,
            5);

    assertThat(suite.train()).filteredOn(e -> e.task().equals(TaskKind.ADD.id())).hasSize(300);
    assertThat(suite.train()).filteredOn(e -> e.task().equals(TaskKind.COPY.id())).hasSize(100);
    assertThat(suite.test()).filteredOn(e -> e.task().equals(TaskKind.ADD.id())).hasSize(20);
    assertThat(suite.validation()).filteredOn(e -> e.task().equals(TaskKind.COPY.id())).hasSize(20);
  }

  @Test
  void shouldFailWhenTheTaskHasTooFewDistinctPrompts() {
    TaskSettings tiny = TaskSettings.defaults().withAlphabet("ab").withTextLength(2, 2);
    assertThatThrownBy(() -> TaskSuite.generate(List.of(TaskKind.COPY), tiny, 3, 0, 2, 1))
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessageContaining("distinct prompts");
  }

  @Test
  void shouldSampleATrainSplitLargerThanTheDistinctPromptsWithoutTouchingTheHeldOutOnes() {
    TaskSettings small =
        TaskSettings.defaults().withAlphabet("abc").withTextLength(2, 2); // 9 distinct copies
    TaskSuite suite =
        TaskSuite.sample(List.of(TaskKind.COPY), List.of(TaskKind.COPY), small, 100, 2, 3, 9);

    assertThat(suite.train()).hasSize(100);
    Set<String> heldOut = prompts(suite.test());
    heldOut.addAll(prompts(suite.validation()));
    assertThat(heldOut).hasSize(5);
    assertThat(prompts(suite.train())).hasSize(4).doesNotContainAnyElementsOf(heldOut);
    assertThat(
            TaskSuite.sample(List.of(TaskKind.COPY), List.of(TaskKind.COPY), small, 100, 2, 3, 9))
        .isEqualTo(suite);
    assertThatThrownBy(
            () ->
                TaskSuite.sample(List.of(TaskKind.COPY), List.of(TaskKind.COPY), small, 1, 0, 9, 9))
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessageContaining("distinct prompts");
  }

  @Test
  void shouldRejectSuitesWhoseSplitsShareAPrompt() {
    TaskExample example = new TaskExample("copy", "copy:ab=", "ab");
    assertThatThrownBy(() -> new TaskSuite(List.of(example), List.of(), List.of(example)))
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessageContaining("copy:ab=");
  }

  @Test
  void shouldRoundTripJsonlAndSplitUserExamples() throws IOException {
    List<TaskExample> examples = new ArrayList<>();
    for (int i = 0; i < 100; i++) {
      examples.add(new TaskExample("custom", "q" + i + " \"quoted\" é=", "a" + i));
    }
    examples.add(new TaskExample("custom", "q0 \"quoted\" é=", "duplicate"));
    Path file = dir.resolve("examples.jsonl");
    TaskJsonl.write(file, examples);
    assertThat(Files.readAllLines(file).getFirst())
        .isEqualTo("{\"task\":\"custom\",\"prompt\":\"q0 \\\"quoted\\\" é=\",\"answer\":\"a0\"}");
    assertThat(TaskJsonl.read(file)).isEqualTo(examples);

    TaskSuite suite = TaskSuite.split(TaskJsonl.read(file), 0.1, 0.2, 7);
    assertThat(suite.train()).hasSize(70);
    assertThat(suite.validation()).hasSize(10);
    assertThat(suite.test()).hasSize(20);
    assertThat(TaskSuite.split(examples, 0.1, 0.2, 7)).isEqualTo(suite);
  }

  @Test
  void shouldReportTheLineOfAnInvalidJsonlExample() throws IOException {
    Path file = dir.resolve("bad.jsonl");
    Files.writeString(file, "{\"prompt\":\"1+1=\",\"answer\":\"2\"}\n\n{\"prompt\":\"x\"}\n");
    assertThatThrownBy(() -> TaskJsonl.read(file))
        .isInstanceOf(IOException.class)
        .hasMessageContaining(":3:");
    Files.writeString(file, "{\"prompt\":\"1+1=\",\"answer\":\"2\"}\n");
    assertThat(TaskJsonl.read(file)).containsExactly(new TaskExample("custom", "1+1=", "2"));
  }

  private static Set<String> prompts(List<TaskExample> examples) {
    Set<String> prompts = new HashSet<>();
    examples.forEach(example -> prompts.add(example.prompt()));
    return prompts;
  }
}
