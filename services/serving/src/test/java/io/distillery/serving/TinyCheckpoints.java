package io.distillery.serving;

import io.distillery.model.config.LlamaConfig;
import io.distillery.model.llama.LlamaModel;
import io.distillery.model.safetensors.DType;
import io.distillery.model.tasks.ExactMatch;
import io.distillery.model.tokenizer.ByteTokenizer;
import java.io.IOException;
import java.nio.file.Path;

/**
 * Tiny random byte-level Llama checkpoints made in the test, and their reference greedy answers.
 */
final class TinyCheckpoints {

  private TinyCheckpoints() {}

  /**
   * A checkpoint directory with a random model of the given width and seed plus the byte tokenizer.
   */
  static Path write(Path dir, int hidden, int layers, long seed) throws IOException {
    LlamaConfig cfg =
        LlamaConfig.builder()
            .vocabSize(ByteTokenizer.VOCAB_SIZE)
            .hiddenSize(hidden)
            .intermediateSize(2 * hidden)
            .numHiddenLayers(layers)
            .numAttentionHeads(4)
            .numKeyValueHeads(2)
            .maxPositionEmbeddings(256)
            .build();
    try (LlamaModel m = LlamaModel.random(cfg, seed)) {
      m.save(dir, DType.F32);
    }
    ByteTokenizer.instance().save(dir);
    return dir;
  }

  /** The greedy answer the model core gives, computed directly (not through the node). */
  static String greedyAnswer(Path dir, String prompt, int maxTokens) throws IOException {
    try (LlamaModel m = LlamaModel.load(dir)) {
      return ExactMatch.answer(m, ByteTokenizer.instance(), prompt, maxTokens);
    }
  }
}
