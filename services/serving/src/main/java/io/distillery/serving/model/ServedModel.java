package io.distillery.serving.model;

import io.distillery.model.CorruptCheckpointException;
import io.distillery.model.config.LlamaConfig;
import io.distillery.model.llama.LlamaModel;
import io.distillery.model.llama.SamplingParams;
import io.distillery.model.llama.ScoredGeneration;
import io.distillery.model.quant.CompressedTensors;
import io.distillery.model.tokenizer.TextTokenizer;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * One loaded artefact (a Llama checkpoint and its tokenizer) that requests borrow. Reference
 * counted so that a hot swap never closes a model under a request: the routing table holds one
 * reference, each request one more ({@link #tryAcquire()} / {@link #release()}); {@link #retire()}
 * drops the routing's reference and the weights are freed when the last request releases its own.
 */
public final class ServedModel {

  private static final Logger LOG = LoggerFactory.getLogger(ServedModel.class);

  private final String sha256;
  private final String uri;
  private final LlamaModel model;
  private final TextTokenizer tokenizer;
  private final int stopTokenId;
  private final AtomicInteger refs = new AtomicInteger(1);
  private final AtomicBoolean retired = new AtomicBoolean();
  private final GenerationBatcher batcher;

  public ServedModel(String sha256, String uri, LlamaModel model, TextTokenizer tokenizer) {
    this.sha256 = sha256;
    this.uri = uri;
    this.model = model;
    this.tokenizer = tokenizer;
    this.batcher = new GenerationBatcher(model, sha256.substring(0, Math.min(12, sha256.length())));
    this.stopTokenId =
        tokenizer
            .eosId()
            .orElseGet(
                () -> {
                  var ids = model.config().eosTokenIds();
                  return ids == null || ids.isEmpty() ? -1 : ids.getFirst();
                });
  }

  /**
   * Loads a served artefact: a deployer package ({@code <dir>/model/config.json}) or a plain HF
   * checkpoint directory ({@code <dir>/config.json}); compressed-tensors checkpoints are
   * dequantized on load.
   *
   * @throws CorruptCheckpointException if neither layout is there, or the tokenizer does not fit
   *     the model
   */
  public static ServedModel load(Path dir, String sha256, String uri) throws IOException {
    Path modelDir = modelDirectory(dir);
    LlamaModel model = CompressedTensors.loadAny(modelDir);
    try {
      TextTokenizer tokenizer = TextTokenizer.load(modelDir);
      if (tokenizer.vocabSize() > model.config().vocabSize()) {
        throw new CorruptCheckpointException(
            modelDir,
            "tokenizer has "
                + tokenizer.vocabSize()
                + " tokens but the model's vocab_size is "
                + model.config().vocabSize());
      }
      return new ServedModel(sha256, uri, model, tokenizer);
    } catch (IOException | RuntimeException e) {
      model.close();
      throw e;
    }
  }

  /**
   * {@code dir/model} for a deployer package, else {@code dir} itself when it holds a checkpoint.
   */
  public static Path modelDirectory(Path dir) throws CorruptCheckpointException {
    if (Files.isRegularFile(dir.resolve("model").resolve(LlamaConfig.FILE_NAME))) {
      return dir.resolve("model");
    }
    if (Files.isRegularFile(dir.resolve(LlamaConfig.FILE_NAME))) {
      return dir;
    }
    throw new CorruptCheckpointException(
        dir,
        "holds neither model/config.json (a serving package) nor config.json" + " (a checkpoint)");
  }

  public String sha256() {
    return sha256;
  }

  public String uri() {
    return uri;
  }

  public LlamaModel model() {
    return model;
  }

  public TextTokenizer tokenizer() {
    return tokenizer;
  }

  /**
   * Number of prompt tokens the model sees for {@code prompt} ({@code <s>} included when the
   * tokenizer has one).
   */
  public int[] encodePrompt(String prompt) {
    return tokenizer.encode(prompt, true, false);
  }

  /**
   * Generates an answer, decoded together with the model's other requests in flight ({@link
   * GenerationBatcher}). The confidence is the mean log-probability of the generated tokens (the
   * stop token included) under the model.
   */
  public Answer answer(String prompt, int maxTokens, SamplingParams sampling, long deadlineNanos) {
    int[] ids = encodePrompt(prompt);
    ScoredGeneration.Result r =
        batcher.generate(ids, maxTokens, sampling, stopTokenId, deadlineNanos);
    int[] tokens = r.stopped() ? Arrays.copyOf(r.tokens(), r.tokens().length - 1) : r.tokens();
    String finish = r.stopped() ? "stop" : r.timedOut() ? "timeout" : "length";
    return new Answer(
        tokenizer.decode(tokens),
        ids.length,
        r.tokens().length,
        finish,
        r.meanLogProb(),
        r.timedOut());
  }

  /** A generated answer; {@code finishReason} is stop, length or timeout. */
  public record Answer(
      String text,
      int promptTokens,
      int completionTokens,
      String finishReason,
      double confidence,
      boolean timedOut) {}

  /** Borrows the model for one request; false once it has been retired and freed. */
  public boolean tryAcquire() {
    while (true) {
      int r = refs.get();
      if (r == 0) {
        return false;
      }
      if (refs.compareAndSet(r, r + 1)) {
        return true;
      }
    }
  }

  /** Returns a borrowed reference; the last one out frees a retired model. */
  public void release() {
    int left = refs.decrementAndGet();
    if (left == 0) {
      batcher.close();
      model.close();
      LOG.info("model freed sha256={} uri={}", sha256, uri);
    } else if (left < 0) {
      throw new IllegalStateException("model " + sha256 + " released more often than acquired");
    }
  }

  /** Drops the routing table's reference (once); the model is freed when no request holds it. */
  public void retire() {
    if (retired.compareAndSet(false, true)) {
      release();
    }
  }

  /** Requests currently holding the model (the routing reference not counted). */
  public int inFlight() {
    return Math.max(0, refs.get() - (retired.get() ? 0 : 1));
  }

  public boolean isFreed() {
    return refs.get() == 0;
  }
}
