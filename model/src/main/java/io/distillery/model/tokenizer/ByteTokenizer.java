package io.distillery.model.tokenizer;

import com.fasterxml.jackson.core.JacksonException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.databind.json.JsonMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.distillery.model.CorruptCheckpointException;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.OptionalInt;

/**
 * A byte-level tokenizer: every UTF-8 byte is a token, so any text round-trips and the vocabulary
 * is tiny. Used by models the platform trains from scratch and by tests.
 *
 * <h2>Ids</h2>
 *
 * <ul>
 *   <li>{@code 0..255}: the byte with that value
 *   <li>{@code 256}: {@code <pad>}
 *   <li>{@code 257}: {@code <s>} (beginning of sequence)
 *   <li>{@code 258}: {@code </s>} (end of sequence)
 * </ul>
 *
 * Vocabulary size 259.
 *
 * <h2>Files</h2>
 *
 * {@code tokenizer.json} (our own format, not the Hugging Face tokenizers one):
 *
 * <pre>{@code
 * {"format": "distillery-byte-tokenizer", "version": 1, "vocab_size": 259,
 *  "byte_tokens": {"first_id": 0, "count": 256},
 *  "special_tokens": [{"id": 256, "content": "<pad>"}, {"id": 257, "content": "<s>"},
 *                     {"id": 258, "content": "</s>"}]}
 * }</pre>
 *
 * and {@code tokenizer_config.json}, with the special tokens under the keys transformers uses:
 *
 * <pre>{@code
 * {"tokenizer_class": "DistilleryByteTokenizer", "bos_token": "<s>", "eos_token": "</s>",
 *  "pad_token": "<pad>", "add_bos_token": true, "add_eos_token": false}
 * }</pre>
 */
public final class ByteTokenizer implements TextTokenizer {

  public static final String TOKENIZER_FILE = "tokenizer.json";
  public static final String CONFIG_FILE = "tokenizer_config.json";
  public static final String FORMAT = "distillery-byte-tokenizer";
  public static final int VERSION = 1;
  public static final String TOKENIZER_CLASS = "DistilleryByteTokenizer";

  public static final int BYTE_TOKENS = 256;
  public static final int PAD_ID = 256;
  public static final int BOS_ID = 257;
  public static final int EOS_ID = 258;
  public static final int VOCAB_SIZE = 259;
  public static final String PAD = "<pad>";
  public static final String BOS = "<s>";
  public static final String EOS = "</s>";

  private static final String[] SPECIALS = {PAD, BOS, EOS};
  private static final ObjectMapper JSON =
      JsonMapper.builder().enable(SerializationFeature.INDENT_OUTPUT).build();
  private static final ByteTokenizer INSTANCE = new ByteTokenizer();

  private ByteTokenizer() {}

  /** The tokenizer (it has no state). */
  public static ByteTokenizer instance() {
    return INSTANCE;
  }

  @Override
  public OptionalInt bosId() {
    return OptionalInt.of(BOS_ID);
  }

  @Override
  public OptionalInt eosId() {
    return OptionalInt.of(EOS_ID);
  }

  @Override
  public OptionalInt padId() {
    return OptionalInt.of(PAD_ID);
  }

  @Override
  public int vocabSize() {
    return VOCAB_SIZE;
  }

  /** The UTF-8 bytes of {@code text} as ids, no special tokens. */
  @Override
  public int[] encode(String text) {
    return encode(text, false, false);
  }

  /** The UTF-8 bytes of {@code text} as ids, optionally wrapped in {@code <s>} and {@code </s>}. */
  @Override
  public int[] encode(String text, boolean addBos, boolean addEos) {
    byte[] bytes = text.getBytes(StandardCharsets.UTF_8);
    int offset = addBos ? 1 : 0;
    int[] ids = new int[bytes.length + offset + (addEos ? 1 : 0)];
    if (addBos) {
      ids[0] = BOS_ID;
    }
    for (int i = 0; i < bytes.length; i++) {
      ids[offset + i] = bytes[i] & 0xff;
    }
    if (addEos) {
      ids[ids.length - 1] = EOS_ID;
    }
    return ids;
  }

  /**
   * Text from ids: special tokens are skipped; byte sequences that are not valid UTF-8 (a model may
   * emit any bytes) decode to U+FFFD.
   *
   * @throws IllegalArgumentException for an id outside the vocabulary
   */
  @Override
  public String decode(int[] ids) {
    ByteArrayOutputStream bytes = new ByteArrayOutputStream(ids.length);
    for (int id : ids) {
      if (id < 0 || id >= VOCAB_SIZE) {
        throw new IllegalArgumentException(
            "token id " + id + " is outside the vocabulary [0, " + VOCAB_SIZE + ")");
      }
      if (id < BYTE_TOKENS) {
        bytes.write(id);
      }
    }
    return bytes.toString(StandardCharsets.UTF_8);
  }

  /** The text of one token: the special token's name, or its byte as ISO-8859-1 for display. */
  public String tokenText(int id) {
    if (id >= BYTE_TOKENS && id < VOCAB_SIZE) {
      return SPECIALS[id - BYTE_TOKENS];
    }
    if (id < 0 || id >= VOCAB_SIZE) {
      throw new IllegalArgumentException("token id " + id + " is outside the vocabulary");
    }
    return String.valueOf((char) id);
  }

  /** Writes {@code tokenizer.json} and {@code tokenizer_config.json} into {@code directory}. */
  public void save(Path directory) throws IOException {
    Files.createDirectories(directory);
    ObjectNode tokenizer = JSON.createObjectNode();
    tokenizer.put("format", FORMAT);
    tokenizer.put("version", VERSION);
    tokenizer.put("vocab_size", VOCAB_SIZE);
    ObjectNode bytes = tokenizer.putObject("byte_tokens");
    bytes.put("first_id", 0);
    bytes.put("count", BYTE_TOKENS);
    ArrayNode specials = tokenizer.putArray("special_tokens");
    for (int i = 0; i < SPECIALS.length; i++) {
      specials.addObject().put("id", BYTE_TOKENS + i).put("content", SPECIALS[i]);
    }
    ObjectNode config = JSON.createObjectNode();
    config.put("tokenizer_class", TOKENIZER_CLASS);
    config.put("bos_token", BOS);
    config.put("eos_token", EOS);
    config.put("pad_token", PAD);
    config.put("add_bos_token", true);
    config.put("add_eos_token", false);
    Files.writeString(directory.resolve(TOKENIZER_FILE), JSON.writeValueAsString(tokenizer) + "\n");
    Files.writeString(directory.resolve(CONFIG_FILE), JSON.writeValueAsString(config) + "\n");
  }

  /**
   * Reads and checks the two files in {@code directory}.
   *
   * @throws CorruptCheckpointException if either file is not this tokenizer's format (a Hugging
   *     Face {@code tokenizer.json} is refused here: it is not supported yet)
   */
  public static ByteTokenizer load(Path directory) throws IOException {
    Path tokenizerFile = directory.resolve(TOKENIZER_FILE);
    JsonNode tokenizer = readObject(tokenizerFile);
    if (!FORMAT.equals(tokenizer.path("format").asText(null))) {
      throw new CorruptCheckpointException(
          tokenizerFile,
          "not a "
              + FORMAT
              + " file (format key is "
              + tokenizer.path("format")
              + "); Hugging Face tokenizers are not supported yet");
    }
    require(
        tokenizerFile,
        tokenizer.path("version").isInt() && tokenizer.path("version").intValue() == VERSION,
        "version is " + tokenizer.path("version") + ", expected " + VERSION);
    require(
        tokenizerFile,
        tokenizer.path("vocab_size").isInt()
            && tokenizer.path("vocab_size").intValue() == VOCAB_SIZE,
        "vocab_size is " + tokenizer.path("vocab_size") + ", expected " + VOCAB_SIZE);
    JsonNode bytes = tokenizer.path("byte_tokens");
    require(
        tokenizerFile,
        bytes.path("first_id").isInt()
            && bytes.path("first_id").intValue() == 0
            && bytes.path("count").isInt()
            && bytes.path("count").intValue() == BYTE_TOKENS,
        "byte_tokens must be {first_id: 0, count: 256}, got " + bytes);
    JsonNode specials = tokenizer.path("special_tokens");
    require(
        tokenizerFile,
        specials.isArray() && specials.size() == SPECIALS.length,
        "special_tokens must list " + SPECIALS.length + " tokens, got " + specials);
    for (int i = 0; i < SPECIALS.length; i++) {
      JsonNode special = specials.get(i);
      require(
          tokenizerFile,
          special.path("id").isInt()
              && special.path("id").intValue() == BYTE_TOKENS + i
              && SPECIALS[i].equals(special.path("content").asText(null)),
          "special token "
              + i
              + " must be {id: "
              + (BYTE_TOKENS + i)
              + ", content: "
              + SPECIALS[i]
              + "}, got "
              + special);
    }
    Path configFile = directory.resolve(CONFIG_FILE);
    JsonNode config = readObject(configFile);
    require(
        configFile,
        TOKENIZER_CLASS.equals(config.path("tokenizer_class").asText(null)),
        "tokenizer_class is " + config.path("tokenizer_class") + ", expected " + TOKENIZER_CLASS);
    require(
        configFile,
        BOS.equals(config.path("bos_token").asText(null))
            && EOS.equals(config.path("eos_token").asText(null))
            && PAD.equals(config.path("pad_token").asText(null)),
        "bos/eos/pad tokens must be " + BOS + ", " + EOS + ", " + PAD);
    return INSTANCE;
  }

  private static JsonNode readObject(Path file) throws IOException {
    JsonNode node;
    try {
      node = JSON.readTree(Files.readAllBytes(file));
    } catch (JacksonException e) {
      throw new CorruptCheckpointException(file, "not valid JSON: " + e.getOriginalMessage(), e);
    }
    if (node == null || !node.isObject()) {
      throw new CorruptCheckpointException(file, "not a JSON object");
    }
    return node;
  }

  private static void require(Path file, boolean condition, String problem)
      throws CorruptCheckpointException {
    if (!condition) {
      throw new CorruptCheckpointException(file, problem);
    }
  }
}
