package io.distillery.model.tasks;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class TaskSettingsTest {

  @TempDir Path dir;

  @Test
  void shouldReadBackWhatWasWritten() throws IOException {
    TaskSettings settings =
        TaskSettings.defaults().withAdditionDigits(2).withAlphabet("abc").withSortLength(2, 4);
    settings.write(dir);
    assertThat(TaskSettings.read(dir)).contains(settings);
    assertThat(TaskSettings.forModel(dir)).isEqualTo(settings);
  }

  @Test
  void shouldFallBackToDefaultsWhenTheModelDoesNotSay() throws IOException {
    assertThat(TaskSettings.read(dir)).isEmpty();
    assertThat(TaskSettings.forModel(dir)).isEqualTo(TaskSettings.defaults());
  }

  @Test
  void shouldRefuseABrokenFileNamingIt() throws IOException {
    String valid =
        "\"minTextLength\":3,\"maxTextLength\":6,\"alphabet\":\"abc\",\"recallPairs\":3,"
            + "\"minSortLength\":3,\"maxSortLength\":6";
    for (String[] bad :
        new String[][] {
          {"not json", "does not hold valid task settings"},
          {"[1, 2]", "does not hold valid task settings"},
          {"{" + valid + "}", "additionDigits"}, // missing
          {"{\"additionDigits\":0," + valid + "}", "additionDigits must be in [1, 9]"},
          {"{\"additionDigits\":2," + valid + ",\"extra\":1}", "extra"},
          {"{\"additionDigits\":null," + valid + "}", "additionDigits"}
        }) {
      Files.writeString(dir.resolve(TaskSettings.FILE_NAME), bad[0]);
      assertThatThrownBy(() -> TaskSettings.read(dir))
          .as(bad[0])
          .isInstanceOf(IOException.class)
          .hasMessageContaining(TaskSettings.FILE_NAME)
          .hasMessageContaining(bad[1]);
    }
  }

  @Test
  void shouldRefuseAnOversizedFileWithoutParsingIt() throws IOException {
    Files.writeString(dir.resolve(TaskSettings.FILE_NAME), " ".repeat(100_000) + "{}");
    assertThatThrownBy(() -> TaskSettings.read(dir))
        .isInstanceOf(IOException.class)
        .hasMessageContaining("100002 bytes");
  }
}
