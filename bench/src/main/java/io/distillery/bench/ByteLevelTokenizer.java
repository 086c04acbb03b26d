package io.distillery.bench;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.nio.file.Path;

/**
 * Writes a Hugging Face {@code tokenizer.json} of the kind Llama 3 ships (byte-level BPE, the GPT-2
 * byte-to-character map, {@code <|begin_of_text|>} and {@code <|end_of_text|>} as added special
 * tokens at Llama 3's ids) but with no merges: every byte is one token, ids 0-255. It is read by
 * the same code path as a real Llama 3 tokenizer (the Rust tokenizers library through {@link
 * io.distillery.model.tokenizer.HfTokenizer}), so the bench's random-weight checkpoints can be
 * registered, evaluated and served like a user's, with nothing downloaded.
 */
final class ByteLevelTokenizer {

  static final String BOS = "<|begin_of_text|>";
  static final String EOS = "<|end_of_text|>";
  private static final ObjectMapper JSON = new ObjectMapper();

  private ByteLevelTokenizer() {}

  /** Writes {@code tokenizer.json} and {@code tokenizer_config.json} into {@code dir}. */
  static void write(Path dir, int bosId, int eosId) throws IOException {
    ObjectNode root = JSON.createObjectNode();
    root.put("version", "1.0");
    root.putNull("truncation");
    root.putNull("padding");
    ArrayNode added = root.putArray("added_tokens");
    added.add(special(bosId, BOS));
    added.add(special(eosId, EOS));
    root.putNull("normalizer");
    root.set("pre_tokenizer", byteLevel(false));
    root.putNull("post_processor");
    root.set("decoder", byteLevel(true));
    ObjectNode model = root.putObject("model");
    model.put("type", "BPE");
    model.putNull("dropout");
    model.putNull("unk_token");
    model.putNull("continuing_subword_prefix");
    model.putNull("end_of_word_suffix");
    model.put("fuse_unk", false);
    model.put("byte_fallback", false);
    model.put("ignore_merges", false);
    ObjectNode vocab = model.putObject("vocab");
    for (int b = 0; b < 256; b++) {
      vocab.put(byteChar(b), b);
    }
    model.putArray("merges");
    JSON.writerWithDefaultPrettyPrinter().writeValue(dir.resolve("tokenizer.json").toFile(), root);

    ObjectNode config = JSON.createObjectNode();
    config.put("bos_token", BOS);
    config.put("eos_token", EOS);
    config.put("model_max_length", 131072);
    config.put("tokenizer_class", "PreTrainedTokenizerFast");
    JSON.writerWithDefaultPrettyPrinter()
        .writeValue(dir.resolve("tokenizer_config.json").toFile(), config);
  }

  private static ObjectNode special(int id, String content) {
    ObjectNode t = JSON.createObjectNode();
    t.put("id", id);
    t.put("content", content);
    t.put("single_word", false);
    t.put("lstrip", false);
    t.put("rstrip", false);
    t.put("normalized", false);
    t.put("special", true);
    return t;
  }

  private static ObjectNode byteLevel(boolean decoder) {
    ObjectNode n = JSON.createObjectNode();
    n.put("type", "ByteLevel");
    n.put("add_prefix_space", decoder);
    n.put("trim_offsets", true);
    n.put("use_regex", true);
    return n;
  }

  /**
   * GPT-2's printable stand-in for a byte: printable Latin-1 bytes are themselves, the rest are
   * mapped in order to U+0100 and up.
   */
  static String byteChar(int b) {
    if ((b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF)) {
      return String.valueOf((char) b);
    }
    int n = 0;
    for (int c = 0; c < b; c++) {
      if (!((c >= '!' && c <= '~') || (c >= 0xA1 && c <= 0xAC) || (c >= 0xAE && c <= 0xFF))) {
        n++;
      }
    }
    return String.valueOf((char) (256 + n));
  }
}
