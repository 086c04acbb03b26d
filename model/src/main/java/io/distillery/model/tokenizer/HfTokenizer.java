package io.distillery.model.tokenizer;

import ai.djl.huggingface.tokenizers.Encoding;
import ai.djl.huggingface.tokenizers.HuggingFaceTokenizer;
import com.fasterxml.jackson.core.JacksonException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.distillery.model.CorruptCheckpointException;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.Map;
import java.util.OptionalInt;

/**
 * A Hugging Face {@code tokenizer.json} (BPE, WordPiece, WordLevel, Unigram, with their normalizers
 * and pre-tokenizers) through DJL's binding of the Rust tokenizers library. Its native library
 * ships inside the {@code ai.djl.huggingface:tokenizers} jar, so it loads offline; only a local
 * file is ever opened (never a hub id). Special tokens come from {@code tokenizer_config.json}
 * ({@code bos_token}, {@code eos_token}, {@code pad_token}) and are added by {@link #encode(String,
 * boolean, boolean)} itself, not by the tokenizer's post-processor.
 */
public final class HfTokenizer implements TextTokenizer, AutoCloseable {

  public static final String CONFIG_FILE = "tokenizer_config.json";
  private static final ObjectMapper JSON = new ObjectMapper();

  private final HuggingFaceTokenizer tokenizer;
  private final int vocabSize;
  private final OptionalInt bos;
  private final OptionalInt eos;
  private final OptionalInt pad;

  private HfTokenizer(
      HuggingFaceTokenizer tokenizer,
      int vocabSize,
      OptionalInt bos,
      OptionalInt eos,
      OptionalInt pad) {
    this.tokenizer = tokenizer;
    this.vocabSize = vocabSize;
    this.bos = bos;
    this.eos = eos;
    this.pad = pad;
  }

  static boolean isDistilleryFormat(Path tokenizerJson) throws IOException {
    try {
      return ByteTokenizer.FORMAT.equals(
          JSON.readTree(tokenizerJson.toFile()).path("format").asText(""));
    } catch (JacksonException e) {
      throw new CorruptCheckpointException(
          tokenizerJson, "is not valid JSON: " + e.getOriginalMessage(), e);
    }
  }

  /**
   * Loads {@code tokenizer.json} (and {@code tokenizer_config.json} if present) from a model
   * directory.
   */
  public static HfTokenizer load(Path modelDirectory) throws IOException {
    Path file = modelDirectory.resolve(ByteTokenizer.TOKENIZER_FILE);
    JsonNode spec;
    try {
      spec = JSON.readTree(file.toFile());
    } catch (JacksonException e) {
      throw new CorruptCheckpointException(file, "is not valid JSON: " + e.getOriginalMessage(), e);
    }
    if (!spec.isObject() || !spec.path("model").isObject()) {
      throw new CorruptCheckpointException(
          file, "is not a Hugging Face tokenizer.json (no 'model' object)");
    }
    Map<String, Integer> ids = new HashMap<>();
    spec.path("model")
        .path("vocab")
        .properties()
        .forEach(
            e -> {
              if (e.getValue().isInt()) {
                ids.put(e.getKey(), e.getValue().asInt());
              }
            });
    if (spec.path("model").path("vocab").isArray()) { // Unigram: [[piece, score], ...]
      int i = 0;
      for (JsonNode piece : spec.path("model").path("vocab")) {
        ids.put(piece.path(0).asText(), i++);
      }
    }
    for (JsonNode added : spec.path("added_tokens")) {
      ids.put(added.path("content").asText(), added.path("id").asInt());
    }
    int vocab = ids.values().stream().mapToInt(Integer::intValue).max().orElse(-1) + 1;
    if (vocab <= 0) {
      throw new CorruptCheckpointException(file, "has an empty vocabulary");
    }
    JsonNode config =
        Files.exists(modelDirectory.resolve(CONFIG_FILE))
            ? JSON.readTree(modelDirectory.resolve(CONFIG_FILE).toFile())
            : JSON.createObjectNode();
    HuggingFaceTokenizer hf;
    try {
      hf = HuggingFaceTokenizer.newInstance(file, Map.of("addSpecialTokens", "false"));
    } catch (RuntimeException e) {
      throw new CorruptCheckpointException(
          file, "is refused by the tokenizers library: " + e.getMessage(), e);
    }
    return new HfTokenizer(
        hf,
        vocab,
        special(config, "bos_token", ids),
        special(config, "eos_token", ids),
        special(config, "pad_token", ids));
  }

  /**
   * {@code "bos_token": "<s>"} or {@code "bos_token": {"content": "<s>", ...}}, looked up in the
   * vocabulary.
   */
  private static OptionalInt special(JsonNode config, String key, Map<String, Integer> ids) {
    JsonNode v = config.path(key);
    String content = v.isTextual() ? v.asText() : v.path("content").asText(null);
    Integer id = content == null ? null : ids.get(content);
    return id == null ? OptionalInt.empty() : OptionalInt.of(id);
  }

  @Override
  public int[] encode(String text, boolean addBos, boolean addEos) {
    Encoding enc = tokenizer.encode(text);
    long[] raw = enc.getIds();
    boolean b = addBos && bos.isPresent();
    boolean e = addEos && eos.isPresent();
    int[] out = new int[raw.length + (b ? 1 : 0) + (e ? 1 : 0)];
    int i = 0;
    if (b) {
      out[i++] = bos.getAsInt();
    }
    for (long id : raw) {
      out[i++] = Math.toIntExact(id);
    }
    if (e) {
      out[i] = eos.getAsInt();
    }
    return out;
  }

  @Override
  public String decode(int[] ids) {
    long[] raw = new long[ids.length];
    for (int i = 0; i < ids.length; i++) {
      raw[i] = ids[i];
    }
    return tokenizer.decode(raw, true);
  }

  @Override
  public int vocabSize() {
    return vocabSize;
  }

  @Override
  public OptionalInt bosId() {
    return bos;
  }

  @Override
  public OptionalInt eosId() {
    return eos;
  }

  @Override
  public OptionalInt padId() {
    return pad;
  }

  @Override
  public void close() {
    tokenizer.close();
  }
}
