package io.distillery.cli;

import static org.assertj.core.api.Assertions.assertThat;

import io.distillery.schemas.common.ArtefactRef;
import io.distillery.schemas.run.RunState;
import io.distillery.schemas.run.RunStatus;
import io.distillery.schemas.run.StageState;
import io.distillery.schemas.run.StageStatus;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.time.Instant;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

/**
 * The live run view: what it draws on a terminal and in plain lines, and that no line outgrows the
 * width.
 */
class ProgressRendererTest {

  static final String LONG_MESSAGE =
      "distilling the student on 1200 prompts with temperature 2.0 and alpha 0.5 while"
          + " the teacher answers every heldout example of the copy reverse and sort tasks";

  static RunState run(RunStatus status, double percent, String reason) {
    ArtefactRef model =
        ArtefactRef.newBuilder()
            .setUri("file:///m")
            .setSha256("ab".repeat(32))
            .setBytes(1)
            .setFormat("hf-safetensors")
            .build();
    StageStatus stage =
        status == RunStatus.RUNNING
            ? StageStatus.RUNNING
            : status == RunStatus.SUCCEEDED ? StageStatus.COMPLETED : StageStatus.FAILED;
    List<StageState> stages =
        List.of(
            StageState.newBuilder()
                .setNode("prune")
                .setStage("pruner")
                .setStatus(StageStatus.COMPLETED)
                .setPercent(100)
                .setMetrics(Map.of("sparsity", 0.5))
                .build(),
            StageState.newBuilder()
                .setNode("distill")
                .setStage("distiller")
                .setStatus(stage)
                .setPercent(percent)
                .setMessage(LONG_MESSAGE)
                .build());
    return RunState.newBuilder()
        .setRunId("6f1c0f4e-0000-3000-8000-000000000001")
        .setModelId("m")
        .setModel(model)
        .setRecipeName("demo")
        .setRecipe("{}")
        .setStatus(status)
        .setReason(reason)
        .setStages(stages)
        .setCreatedAt(Instant.ofEpochMilli(1))
        .setUpdatedAt(Instant.ofEpochMilli(2))
        .build();
  }

  /** The text a terminal shows for {@code s}: escape sequences removed. */
  static List<String> visibleLines(String s) {
    return Arrays.stream(s.replaceAll("\r|\033\\[[0-9]*[AJK]", "").split("\n"))
        .filter(l -> !l.isEmpty())
        .toList();
  }

  @Test
  void shouldRedrawTheRunsInProgressInPlaceCutToTheWidthAtAWord() {
    StringWriter text = new StringWriter();
    ProgressRenderer r = new ProgressRenderer(new PrintWriter(text), true, 80);

    r.redraw(List.of(run(RunStatus.RUNNING, 40, null)));
    String first = text.toString();
    text.getBuffer().setLength(0);
    r.redraw(List.of(run(RunStatus.RUNNING, 60, null)));
    String second = text.toString();

    assertThat(first)
        .doesNotContain("\033[3A")
        .doesNotContain("\033[2J"); // nothing above is cleared
    assertThat(visibleLines(first)).hasSize(3).allMatch(l -> l.length() <= 79);
    assertThat(visibleLines(first).get(2))
        .startsWith("  distill    distiller    [########............]  40%")
        .endsWith("...");
    assertThat(second).startsWith("\r\033[3A"); // back over the 3 lines drawn before
    assertThat(visibleLines(second).get(2)).contains(" 60%");
    // cut after a whole word: what precedes "..." is a prefix of the message that ends at a word
    String shown = visibleLines(second).get(2);
    String words = shown.substring(shown.indexOf("distilling"), shown.length() - 3);
    assertThat(LONG_MESSAGE).startsWith(words);
    assertThat(LONG_MESSAGE.charAt(words.length())).isEqualTo(' ');
  }

  @Test
  void shouldDrawAFinishedRunOnceWithItsResultAndLeaveItAbove() {
    StringWriter text = new StringWriter();
    ProgressRenderer r = new ProgressRenderer(new PrintWriter(text), true, 100);
    r.redraw(List.of(run(RunStatus.RUNNING, 40, null)));
    text.getBuffer().setLength(0);

    r.redraw(List.of(run(RunStatus.FAILED, 40, "stage distill failed: out of memory")));
    String last = text.toString();
    text.getBuffer().setLength(0);
    r.redraw(List.of(run(RunStatus.FAILED, 40, "stage distill failed: out of memory")));

    assertThat(last).startsWith("\r\033[3A");
    assertThat(visibleLines(last))
        .hasSize(5)
        .contains("    reason: stage distill failed: out of memory");
    assertThat(visibleLines(last).get(3))
        .startsWith("  run 6f1c0f4e-0000-3000-8000-000000000001 FAILED");
    assertThat(text.toString()).isEqualTo("\033[J"); // nothing to redraw, nothing to go back over
  }

  @Test
  void shouldPrintPlainLinesOnChangeWrappedAtWordsWhenNotATerminal() {
    StringWriter text = new StringWriter();
    ProgressRenderer r = new ProgressRenderer(new PrintWriter(text), false, 60);

    r.changed(run(RunStatus.RUNNING, 40, null));
    r.changed(run(RunStatus.RUNNING, 40, null)); // nothing changed: nothing printed
    r.changed(run(RunStatus.SUCCEEDED, 100, null));
    r.changed(run(RunStatus.SUCCEEDED, 100, null));

    List<String> lines = text.toString().lines().toList();
    assertThat(lines).noneMatch(l -> l.contains("\033"));
    assertThat(lines).allMatch(l -> l.length() <= 60);
    assertThat(lines.stream().filter(l -> l.startsWith("6f1c0f4e prune"))).hasSize(1);
    assertThat(lines.stream().filter(l -> l.startsWith("6f1c0f4e distill"))).hasSize(2);
    assertThat(lines.stream().filter(l -> l.startsWith("run 6f1c0f4e")))
        .singleElement()
        .asString()
        .endsWith("SUCCEEDED");
    // the message's words all arrive, none cut: the wrapped lines join back into it
    String joined = String.join(" ", lines.stream().map(String::strip).toList());
    assertThat(joined).contains(LONG_MESSAGE);
  }

  @Test
  void shouldWrapAtSpacesAndKeepAWordLongerThanALineWhole() {
    assertThat(ProgressRenderer.wrap("aaa bbb ccc ddd", 8))
        .containsExactly("aaa bbb", "    ccc", "    ddd");
    assertThat(ProgressRenderer.wrap("short", 8)).containsExactly("short");
    assertThat(ProgressRenderer.wrap("a file:///very/long/path/without/spaces b", 12))
        .containsExactly("a", "    file:///very/long/path/without/spaces", "    b");
    assertThat(ProgressRenderer.fit("aaa bbb ccc", 9)).isEqualTo("aaa...");
    assertThat(ProgressRenderer.fit("aaa bbb", 9)).isEqualTo("aaa bbb");
    assertThat(ProgressRenderer.fit("abcdefghijkl", 9)).isEqualTo("abcdef...");
  }

  @Test
  void shouldTakeTheWidthFromColumnsOrUse100() {
    assertThat(ProgressRenderer.width(Map.of("COLUMNS", "132"))).isEqualTo(132);
    assertThat(ProgressRenderer.width(Map.of())).isEqualTo(100);
    assertThat(ProgressRenderer.width(Map.of("COLUMNS", "wide"))).isEqualTo(100);
  }

  @Test
  void shouldWrapTheStatusBlockToTheWidth() {
    String block = ProgressRenderer.block(run(RunStatus.RUNNING, 40, null), 70);

    assertThat(block.lines()).allMatch(l -> l.length() <= 70);
    assertThat(block).contains("run 6f1c0f4e-0000-3000-8000-000000000001  RUNNING  demo");
  }
}
