package io.distillery.stage;

import static org.assertj.core.api.Assertions.assertThat;

import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class FileTreesTest {

  @TempDir Path dir;

  @Test
  void copiesAndDeletesANestedTree() throws Exception {
    Path source = Files.createDirectories(dir.resolve("ckpt/sub"));
    Files.writeString(dir.resolve("ckpt/config.json"), "{}");
    Files.writeString(source.resolve("model.safetensors"), "weights");

    FileTrees.copy(dir.resolve("ckpt"), dir.resolve("copy"));

    assertThat(dir.resolve("copy/config.json")).hasContent("{}");
    assertThat(dir.resolve("copy/sub/model.safetensors")).hasContent("weights");

    FileTrees.delete(dir.resolve("ckpt"));
    FileTrees.delete(dir.resolve("missing"));

    assertThat(dir.resolve("ckpt")).doesNotExist();
    assertThat(dir.resolve("copy/sub/model.safetensors")).exists();
  }

  @Test
  void copiesAPlainFile() throws Exception {
    Path file = Files.writeString(dir.resolve("a.txt"), "a");

    FileTrees.copy(file, dir.resolve("b.txt"));

    assertThat(dir.resolve("b.txt")).hasContent("a");
  }
}
