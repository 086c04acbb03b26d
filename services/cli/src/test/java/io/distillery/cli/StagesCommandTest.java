package io.distillery.cli;

import static org.assertj.core.api.Assertions.assertThat;

import io.distillery.stage.StageDescriptor;
import java.io.PrintWriter;
import java.io.StringWriter;
import org.junit.jupiter.api.Test;

class StagesCommandTest {

  /**
   * A params record like the workers': boxed components, defaults filled in by the compact
   * constructor.
   */
  record DemoParams(Integer samples, String scheme, Boolean sequential) {
    DemoParams {
      samples = samples == null ? 128 : samples;
      scheme = scheme == null ? "w4-gptq" : scheme;
    }
  }

  record RequiredParams(String target) {
    RequiredParams {
      if (target == null) {
        throw new IllegalArgumentException("target is required");
      }
    }
  }

  private static String markdown(Class<? extends Record> params) {
    StringWriter text = new StringWriter();
    StagesCommand.printMarkdown(
        new PrintWriter(text, true),
        new StageDescriptor("demo", params, true, "a demo stage", null));
    return text.toString();
  }

  @Test
  void listsEveryParamWithItsTypeAndTheDefaultTheRecordFillsIn() {
    String md = markdown(DemoParams.class);

    assertThat(md)
        .contains("### `demo`", "a demo stage")
        .contains("| `samples` | Integer | `128` |")
        .contains("| `scheme` | String | `w4-gptq` |")
        .contains("| `sequential` | Boolean | — |");
  }

  @Test
  void saysSoWhenARecordCannotBeBuiltWithoutParams() {
    assertThat(markdown(RequiredParams.class))
        .contains("| `target` | String | (some params are required) |");
  }
}
