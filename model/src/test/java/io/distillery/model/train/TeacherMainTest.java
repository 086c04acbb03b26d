package io.distillery.model.train;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.distillery.model.tasks.TaskJsonl;
import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class TeacherMainTest {

  @TempDir Path dir;

  @Test
  void shouldWriteCheckpointAndEndWithTheSummaryLine() throws Exception {
    ByteArrayOutputStream bytes = new ByteArrayOutputStream();
    new TeacherMain(new PrintStream(bytes, true, StandardCharsets.UTF_8))
        .run(
            new String[] {
              "--out", dir.toString(), "--steps", "20", "--layers", "1", "--hidden", "32",
                  "--heads", "2",
              "--kv-heads", "1", "--intermediate", "64", "--batch", "8", "--tasks", "copy,sort",
                  "--train", "200",
              "--validation", "10", "--test", "10", "--eval-every", "10", "--threads", "1"
            });
    String output = bytes.toString(StandardCharsets.UTF_8);
    String[] lines = output.split("\n");
    assertThat(lines[lines.length - 1])
        .matches(
            "teacher params=\\d+ exact_match=\\d\\.\\d{4} perplexity=\\d+\\.\\d{4} seconds=\\d+");
    assertThat(output)
        .contains("\r[")
        .contains("20/20 loss=")
        .contains("validation exact_match: copy=");
    for (String file :
        new String[] {
          "config.json",
          "model.safetensors",
          "tokenizer.json",
          "tokenizer_config.json",
          "test.jsonl",
          "validation.jsonl"
        }) {
      assertThat(dir.resolve(file)).exists();
    }
    assertThat(TaskJsonl.read(dir.resolve("test.jsonl"))).hasSize(10);
    assertThat(Files.readString(dir.resolve("config.json"))).contains("\"eos_token_id\"");
  }

  @Test
  void shouldRejectUnknownOptionsAndAMissingOutput() {
    TeacherMain main =
        new TeacherMain(new PrintStream(new ByteArrayOutputStream(), true, StandardCharsets.UTF_8));
    assertThatThrownBy(() -> main.run(new String[] {"--bogus", "1"}))
        .hasMessageContaining("--bogus");
    assertThatThrownBy(() -> main.run(new String[] {"--steps", "1"})).hasMessageContaining("--out");
    assertThatThrownBy(() -> main.run(new String[] {"--out", "x", "--tasks", "nope"}))
        .hasMessageContaining("add, copy, rev, kv, sort");
  }

  @Test
  void shouldReturnExitCodeTwoWithTheReasonInsteadOfExitingTheProcess() throws Exception {
    ByteArrayOutputStream err = new ByteArrayOutputStream();
    int code =
        TeacherMain.execute(
            new String[] {"--bogus", "1"},
            new PrintStream(new ByteArrayOutputStream(), true, StandardCharsets.UTF_8),
            new PrintStream(err, true, StandardCharsets.UTF_8));
    assertThat(code).isEqualTo(2);
    assertThat(err.toString(StandardCharsets.UTF_8)).startsWith("teacher: ").contains("--bogus");
  }
}
