package io.distillery.distiller.teacher;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import io.distillery.model.config.LlamaConfig;
import io.distillery.model.llama.LlamaModel;
import io.distillery.model.safetensors.Checkpoint;
import io.distillery.model.stream.TeacherForcedScorer;
import io.distillery.model.tasks.TaskBatch;
import io.distillery.model.tasks.TaskExample;
import io.distillery.model.tokenizer.ByteTokenizer;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HexFormat;
import java.util.List;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The teacher's top-k logits over a fixed list of examples, computed once and kept in a file named
 * by its fingerprint: the teacher's content (SHA-256 of config.json and every weight file), the
 * examples' token sequences in order, k and the vocabulary. Temperature, alpha and the optimizer
 * are not part of it (the file holds T = 1 log-probs, see {@link TopKLogits}), so a re-run of the
 * same teacher and data with other training settings reuses it, and a changed teacher, example or k
 * computes a new one.
 *
 * <p>Two ways to compute it, with the same result up to float rounding: the in-memory teacher's
 * forward on batches of examples ({@link #computeWhole}), or one streamed teacher-forced pass
 * ({@link #computeStreamed}, {@link TeacherForcedScorer}): the decoder layers are read one at a
 * time from the mapped checkpoint and the LM head in chunks of vocabulary rows, whose logits feed a
 * {@link TopKSelector}, so a teacher larger than memory is never held whole.
 *
 * <p>The positions of an example are those {@link TaskBatch} scores: {@code <s> prompt answer
 * </s>}, every answer token and the stop.
 */
public final class TeacherLogitCache {

  /** The directory under the job's work directory that holds the cache files. */
  public static final String DIR = "teacher-logits";

  private static final Logger LOG = LoggerFactory.getLogger(TeacherLogitCache.class);
  private static final int FORMAT_VERSION = 1;

  private TeacherLogitCache() {}

  /** Progress of a pass: {@code done} of {@code total} steps. */
  @FunctionalInterface
  public interface Progress {
    void report(int done, int total, String step) throws InterruptedException;
  }

  /**
   * What {@link #obtain} did.
   *
   * @param logits the cached distributions
   * @param hit whether they were read from an earlier run's file
   * @param file where they are
   * @param seconds time to read or compute them
   */
  public record Outcome(TopKLogits logits, boolean hit, Path file, double seconds) {}

  /** How to compute the logits when no file matches. */
  @FunctionalInterface
  public interface Computation {
    TopKLogits compute(String fingerprint) throws IOException, InterruptedException;
  }

  /**
   * Reads {@code dir/<fingerprint>.topk} when it exists, else computes and writes it.
   *
   * @throws IOException if the file exists but cannot be read (a corrupt file is recomputed)
   */
  public static Outcome obtain(Path dir, String fingerprint, Computation computation)
      throws IOException, InterruptedException {
    long start = System.nanoTime();
    Path file = dir.resolve(fingerprint + ".topk");
    if (Files.isRegularFile(file)) {
      try {
        TopKLogits cached = TopKLogits.read(file);
        if (cached.fingerprint().equals(fingerprint)) {
          double seconds = (System.nanoTime() - start) / 1e9;
          LOG.info(
              "teacher_cache=hit file={} positions={} k={} seconds={}",
              file,
              cached.positions(),
              cached.k(),
              seconds);
          return new Outcome(cached, true, file, seconds);
        }
        LOG.warn("teacher_cache file={} holds fingerprint {}; recomputing", file, fingerprint);
      } catch (IOException e) {
        LOG.warn("teacher_cache file={} is unreadable ({}); recomputing", file, e.getMessage());
      }
    }
    TopKLogits computed = computation.compute(fingerprint);
    computed.write(file);
    double seconds = (System.nanoTime() - start) / 1e9;
    LOG.info(
        "teacher_cache=miss file={} positions={} k={} bytes={} seconds={}",
        file,
        computed.positions(),
        computed.k(),
        Files.size(file),
        seconds);
    return new Outcome(computed, false, file, seconds);
  }

  /** Each example's {@code <s> prompt answer </s>} token ids, as {@link TaskBatch} encodes it. */
  public static int[][] sequences(List<TaskExample> examples) {
    int[][] out = new int[examples.size()][];
    for (int i = 0; i < out.length; i++) {
      TaskBatch b = TaskBatch.of(List.of(examples.get(i)), ByteTokenizer.instance());
      int[] in = b.inputs()[0];
      out[i] = Arrays.copyOf(in, in.length + 1);
      out[i][in.length] = Math.toIntExact(b.targets()[in.length - 1]);
    }
    return out;
  }

  /** Per example the index of its first cached position, and the total as the last entry. */
  public static int[] offsets(List<TaskExample> examples) {
    int[] offsets = new int[examples.size() + 1];
    for (int i = 0; i < examples.size(); i++) {
      int n = TaskBatch.of(List.of(examples.get(i)), ByteTokenizer.instance()).answerTokens();
      offsets[i + 1] = Math.addExact(offsets[i], n);
    }
    return offsets;
  }

  /**
   * SHA-256 of the teacher's config.json and weight files (in the checkpoint's order): its content,
   * not its path.
   */
  public static String teacherHash(Path model) throws IOException {
    MessageDigest digest = sha256();
    List<Path> files = new ArrayList<>();
    files.add(model.resolve(LlamaConfig.FILE_NAME));
    try (Checkpoint checkpoint = Checkpoint.open(model)) {
      files.addAll(checkpoint.files());
    }
    ByteBuffer buffer = ByteBuffer.allocateDirect(1 << 20);
    for (Path file : files) {
      digest.update(file.getFileName().toString().getBytes(StandardCharsets.UTF_8));
      try (FileChannel channel = FileChannel.open(file, StandardOpenOption.READ)) {
        while (channel.read(buffer.clear()) > 0) {
          digest.update(buffer.flip());
        }
      }
    }
    return HexFormat.of().formatHex(digest.digest());
  }

  /**
   * The cache key: format version, teacher content hash, k, vocabulary, and every example's token
   * sequence in order.
   */
  public static String fingerprint(
      String teacherHash, int k, int vocab, List<TaskExample> examples) {
    MessageDigest digest = sha256();
    digest.update(teacherHash.getBytes(StandardCharsets.UTF_8));
    ByteBuffer header = ByteBuffer.allocate(16).putInt(FORMAT_VERSION).putInt(k).putInt(vocab);
    header.putInt(examples.size());
    digest.update(header.flip());
    ByteBuffer buffer = ByteBuffer.allocate(4);
    for (int[] sequence : sequences(examples)) {
      digest.update(buffer.clear().putInt(-sequence.length).flip());
      for (int id : sequence) {
        digest.update(buffer.clear().putInt(id).flip());
      }
    }
    return HexFormat.of().formatHex(digest.digest());
  }

  private static MessageDigest sha256() {
    try {
      return MessageDigest.getInstance("SHA-256");
    } catch (NoSuchAlgorithmException e) {
      throw new IllegalStateException("no SHA-256 in this JVM", e);
    }
  }

  /**
   * The in-memory teacher's top-k on {@code examples}, {@code batch} examples per forward.
   *
   * @param k ids kept per position (at most the vocabulary)
   */
  public static TopKLogits computeWhole(
      LlamaModel teacher,
      List<TaskExample> examples,
      int k,
      int batch,
      String fingerprint,
      Progress progress)
      throws InterruptedException {
    int vocab = teacher.config().vocabSize();
    int[] offsets = offsets(examples);
    TopKSelector selector = new TopKSelector(offsets[examples.size()], k, vocab);
    int batches = (examples.size() + batch - 1) / batch;
    int position = 0;
    for (int from = 0, done = 0; from < examples.size(); from += batch, done++) {
      if (Thread.interrupted()) {
        throw new InterruptedException("teacher pass interrupted at example " + from);
      }
      progress.report(done, batches, "teacher batch " + (done + 1) + "/" + batches);
      TaskBatch b =
          TaskBatch.of(
              examples.subList(from, Math.min(examples.size(), from + batch)),
              ByteTokenizer.instance());
      try (NDManager scope = teacher.manager().newSubManager()) {
        NDArray logits = b.logits(teacher, scope);
        float[] values = logits.toFloatArray();
        float[] mask = b.mask();
        for (int p = 0; p < mask.length; p++) {
          if (mask[p] > 0) {
            selector.offer(position++, 0, values, p * vocab, vocab);
          }
        }
      }
    }
    progress.report(batches, batches, "teacher pass done");
    return selector.finish(fingerprint, offsets);
  }

  /**
   * Peak bytes of {@link #computeStreamed} over {@code examples}: the streamed scorer's plan plus
   * the selector's heaps.
   */
  public static long streamedPeakBytes(
      LlamaConfig config, List<TaskExample> examples, int k, int batch, int headRows) {
    List<TaskBatch> batches = batches(examples, batch);
    long positions = 0;
    for (TaskBatch b : batches) {
      positions += b.answerTokens();
    }
    return TeacherForcedScorer.peakBytes(config, batches, headRows)
        + TopKSelector.bytes(positions, k);
  }

  /**
   * The teacher's top-k on {@code examples} in streamed teacher-forced passes over the mapped
   * checkpoint at {@code model} (layer by layer; LM head in chunks of {@code headRows} ids), {@code
   * passExamples} examples per pass (their hidden states are what a pass holds; each pass re-reads
   * the layers).
   */
  public static TopKLogits computeStreamed(
      Path model,
      LlamaConfig config,
      List<TaskExample> examples,
      int k,
      int batch,
      int headRows,
      int passExamples,
      String fingerprint,
      TeacherForcedScorer.Progress progress)
      throws IOException, InterruptedException {
    int[] offsets = offsets(examples);
    TopKSelector selector = new TopKSelector(offsets[examples.size()], k, config.vocabSize());
    TeacherForcedScorer scorer = new TeacherForcedScorer(model, config, headRows);
    int passes = (examples.size() + passExamples - 1) / passExamples;
    for (int from = 0, pass = 0; from < examples.size(); from += passExamples, pass++) {
      int to = Math.min(examples.size(), from + passExamples);
      int first = offsets[from];
      int positions = offsets[to] - first;
      int index = pass;
      TeacherForcedScorer.Result result =
          scorer.score(
              batches(examples.subList(from, to), batch),
              null,
              (id, rows, logits) -> {
                for (int i = 0; i < positions; i++) {
                  selector.offer(first + i, id, logits, i * rows, rows);
                }
              },
              (done, total, step) ->
                  progress.report(
                      index * total + done,
                      passes * total,
                      (passes > 1 ? "pass " + (index + 1) + "/" + passes + " " : "") + step));
      if (result.logProb().length != positions) {
        throw new IllegalStateException(
            "the streamed pass scored "
                + result.logProb().length
                + " positions, expected "
                + positions);
      }
    }
    return selector.finish(fingerprint, offsets);
  }

  /** Examples in order, {@code batch} per unpacked {@link TaskBatch}. */
  static List<TaskBatch> batches(List<TaskExample> examples, int batch) {
    List<TaskBatch> out = new ArrayList<>();
    for (int from = 0; from < examples.size(); from += batch) {
      out.add(
          TaskBatch.of(
              examples.subList(from, Math.min(examples.size(), from + batch)),
              ByteTokenizer.instance()));
    }
    return out;
  }
}
