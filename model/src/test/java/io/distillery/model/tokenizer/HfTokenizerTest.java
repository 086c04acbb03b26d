package io.distillery.model.tokenizer;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.distillery.model.CorruptCheckpointException;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A hand-written byte-level BPE tokenizer.json (the Llama 3 / Qwen2 kind), read offline through
 * DJL's binding.
 */
class HfTokenizerTest {

  @TempDir Path dir;

  static final String BYTE_LEVEL_BPE =
      """
        {"version": "1.0", "truncation": null, "padding": null,
         "added_tokens": [
           {"id": 0, "content": "<s>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
           {"id": 1, "content": "</s>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}],
         "normalizer": null,
         "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
         "post_processor": null,
         "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
         "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                   "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
           "vocab": {"<s>": 0, "</s>": 1, "h": 2, "e": 3, "l": 4, "o": 5, "Ġ": 6, "w": 7, "r": 8, "d": 9,
                     "he": 10, "ll": 11, "hell": 12, "hello": 13, "Ġw": 14, "or": 15, "Ġwor": 16, "Ġworl": 17,
                     "Ġworld": 18},
           "merges": ["h e", "l l", "he ll", "hell o", "Ġ w", "o r", "Ġw or", "Ġwor l", "Ġworl d"]}}
        """;

  @Test
  void shouldEncodeAndDecodeAByteLevelBpeWhenOffline() throws Exception {
    Files.writeString(dir.resolve("tokenizer.json"), BYTE_LEVEL_BPE);
    Files.writeString(
        dir.resolve("tokenizer_config.json"),
        "{\"bos_token\": \"<s>\", \"eos_token\": {\"content\": \"</s>\"}}");
    try (HfTokenizer t = HfTokenizer.load(dir)) {
      assertThat(t.encode("hello world")).containsExactly(13, 18);
      assertThat(t.encode("hello world", true, true)).containsExactly(0, 13, 18, 1);
      assertThat(t.encode("held")).containsExactly(10, 4, 9);
      assertThat(t.decode(new int[] {0, 13, 18, 1})).isEqualTo("hello world");
      assertThat(t.vocabSize()).isEqualTo(19);
      assertThat(t.bosId()).hasValue(0);
      assertThat(t.eosId()).hasValue(1);
      assertThat(t.padId()).isEmpty();
    }
  }

  @Test
  void shouldPickTheTokenizerByItsFormat() throws Exception {
    ByteTokenizer.instance().save(dir);
    assertThat(TextTokenizer.load(dir)).isSameAs(ByteTokenizer.instance());
    Path hf = Files.createDirectories(dir.resolve("hf"));
    Files.writeString(hf.resolve("tokenizer.json"), BYTE_LEVEL_BPE);
    try (var t = (HfTokenizer) TextTokenizer.load(hf)) {
      assertThat(t.encode("hello")).containsExactly(13);
    }
  }

  @Test
  void shouldRefuseWhatIsNotATokenizer() throws Exception {
    Files.writeString(dir.resolve("tokenizer.json"), "{\"model\": 3}");
    assertThatThrownBy(() -> TextTokenizer.load(dir))
        .isInstanceOf(CorruptCheckpointException.class)
        .hasMessageContaining("no 'model' object");
    Files.writeString(dir.resolve("tokenizer.json"), "{not json");
    assertThatThrownBy(() -> TextTokenizer.load(dir)).hasMessageContaining("not valid JSON");
    Files.delete(dir.resolve("tokenizer.json"));
    assertThatThrownBy(() -> TextTokenizer.load(dir)).hasMessageContaining("has no tokenizer.json");
  }
}
