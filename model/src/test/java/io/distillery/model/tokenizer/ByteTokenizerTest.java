package io.distillery.model.tokenizer;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.distillery.model.CorruptCheckpointException;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class ByteTokenizerTest {

  private final ByteTokenizer tokenizer = ByteTokenizer.instance();

  @TempDir Path dir;

  @Test
  void shouldEncodeUtf8BytesWhenTextHasAccents() {
    // h=104, é = C3 A9 = 195 169, l=108, o=111
    assertThat(tokenizer.encode("héllo")).containsExactly(104, 195, 169, 108, 108, 111);
    assertThat(tokenizer.encode("hi", true, true)).containsExactly(257, 104, 105, 258);
    assertThat(tokenizer.vocabSize()).isEqualTo(259);
  }

  @Test
  void shouldRoundTripTextWhenDecodingEncodedIds() {
    String text = "Distillery ✓ 蒸留所 🥃\n";
    assertThat(tokenizer.decode(tokenizer.encode(text, true, true))).isEqualTo(text);
  }

  @Test
  void shouldSkipSpecialTokensWhenDecoding() {
    assertThat(tokenizer.decode(new int[] {257, 104, 256, 105, 258})).isEqualTo("hi");
    assertThat(tokenizer.tokenText(ByteTokenizer.EOS_ID)).isEqualTo("</s>");
  }

  @Test
  void shouldReplaceInvalidUtf8WhenModelEmitsBrokenBytes() {
    assertThat(tokenizer.decode(new int[] {104, 0xC3, 105})).isEqualTo("h\uFFFDi");
    assertThatThrownBy(() -> tokenizer.decode(new int[] {259}))
        .isInstanceOf(IllegalArgumentException.class);
  }

  @Test
  void shouldLoadSavedFilesWhenRoundTripped() throws IOException {
    tokenizer.save(dir);
    assertThat(Files.readString(dir.resolve("tokenizer.json")))
        .contains("\"format\" : \"distillery-byte-tokenizer\"");
    assertThat(Files.readString(dir.resolve("tokenizer_config.json")))
        .contains("\"eos_token\" : \"</s>\"");
    assertThat(ByteTokenizer.load(dir).encode("a")).containsExactly(97);
  }

  @Test
  void shouldRefuseLoadWhenFileIsHuggingFaceFormat() throws IOException {
    tokenizer.save(dir);
    Files.writeString(
        dir.resolve("tokenizer.json"), "{\"version\": \"1.0\", \"model\": {\"type\": \"BPE\"}}");
    assertThatThrownBy(() -> ByteTokenizer.load(dir))
        .isInstanceOf(CorruptCheckpointException.class)
        .hasMessageContaining("tokenizer.json")
        .hasMessageContaining("not supported yet");
  }

  @Test
  void shouldRefuseLoadWhenSpecialIdsDiffer() throws IOException {
    tokenizer.save(dir);
    Path file = dir.resolve("tokenizer.json");
    Files.writeString(file, Files.readString(file).replace("\"id\" : 258", "\"id\" : 300"));
    assertThatThrownBy(() -> ByteTokenizer.load(dir))
        .isInstanceOf(CorruptCheckpointException.class)
        .hasMessageContaining("special token 2");
  }
}
