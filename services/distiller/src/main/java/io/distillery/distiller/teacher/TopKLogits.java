package io.distillery.distiller.teacher;

import java.io.BufferedInputStream;
import java.io.BufferedOutputStream;
import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.EOFException;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.Arrays;

/**
 * The teacher's sparse next-token distributions at every answer position of a fixed list of
 * sequences (the training examples, then the validation examples): per position the {@code k} most
 * likely token ids (descending, ties by the lower id), their log-probabilities at temperature 1,
 * and the log of the probability mass of all other tokens ({@code -Infinity} when {@code k} covers
 * the vocabulary). Temperature 1 is stored because the teacher's distribution at any T restricted
 * to these ids follows from it: softmax(z/T) over a subset is softmax(log p / T) over it, the
 * log-sum-exp cancelling.
 *
 * <p>File layout (big-endian): magic {@value #MAGIC}, the 64-hex fingerprint as UTF, k, vocab,
 * example count, then per example its position count, then all ids (int32, positions x k), all
 * log-probs (float32, positions x k), all rest log-masses (float32, positions). For a 256-example
 * task-suite run with k 64 that is about 4 MB.
 *
 * @param fingerprint what the logits were computed from ({@link TeacherLogitCache#fingerprint})
 * @param k ids kept per position
 * @param vocab the teacher's vocabulary size
 * @param offsets per example the index of its first position; one extra entry: the total
 * @param ids {@code positions * k} token ids
 * @param logProbs {@code positions * k} log p(id) at T = 1
 * @param restLogMass {@code positions}: log of 1 - sum of the kept probabilities
 */
public record TopKLogits(
    String fingerprint,
    int k,
    int vocab,
    int[] offsets,
    int[] ids,
    float[] logProbs,
    float[] restLogMass) {

  static final String MAGIC = "distillery-topk-logits-v1";

  public TopKLogits {
    if (k < 1 || k > vocab) {
      throw new IllegalArgumentException("k must be in [1, vocab=" + vocab + "], got " + k);
    }
    int positions = offsets[offsets.length - 1];
    if (ids.length != (long) positions * k
        || logProbs.length != ids.length
        || restLogMass.length != positions) {
      throw new IllegalArgumentException(
          "top-k arrays do not match "
              + positions
              + " positions of k="
              + k
              + ": ids "
              + ids.length
              + ", logProbs "
              + logProbs.length
              + ", rest "
              + restLogMass.length);
    }
  }

  /** Whether the kept ids cover the whole vocabulary (no "rest" bucket: exact full-logit KD). */
  public boolean complete() {
    return k == vocab;
  }

  public int examples() {
    return offsets.length - 1;
  }

  public int positions() {
    return offsets[offsets.length - 1];
  }

  /** The first position of example {@code e}. */
  public int offset(int e) {
    return offsets[e];
  }

  /** Answer positions (answer tokens and the stop) of example {@code e}. */
  public int positions(int e) {
    return offsets[e + 1] - offsets[e];
  }

  /** The bytes this holds in memory. */
  public long bytes() {
    return 4L * (offsets.length + ids.length + logProbs.length + restLogMass.length);
  }

  /** Writes the file atomically (a temporary file, then a rename). */
  public void write(Path file) throws IOException {
    Files.createDirectories(file.toAbsolutePath().getParent());
    Path tmp = file.resolveSibling(file.getFileName() + ".tmp");
    try (OutputStream raw = Files.newOutputStream(tmp);
        DataOutputStream out = new DataOutputStream(new BufferedOutputStream(raw, 1 << 16))) {
      out.writeUTF(MAGIC);
      out.writeUTF(fingerprint);
      out.writeInt(k);
      out.writeInt(vocab);
      out.writeInt(examples());
      for (int e = 0; e < examples(); e++) {
        out.writeInt(positions(e));
      }
      for (int id : ids) {
        out.writeInt(id);
      }
      for (float v : logProbs) {
        out.writeFloat(v);
      }
      for (float v : restLogMass) {
        out.writeFloat(v);
      }
    }
    Files.move(tmp, file, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
  }

  /**
   * Reads a file written by {@link #write}.
   *
   * @throws IOException if the file is truncated, is not a top-k logits file, or holds ids outside
   *     the vocabulary
   */
  public static TopKLogits read(Path file) throws IOException {
    try (InputStream raw = Files.newInputStream(file);
        DataInputStream in = new DataInputStream(new BufferedInputStream(raw, 1 << 16))) {
      String magic = in.readUTF();
      if (!MAGIC.equals(magic)) {
        throw new IOException(file + " is not a teacher top-k logits file (" + magic + ")");
      }
      String fingerprint = in.readUTF();
      int k = in.readInt();
      int vocab = in.readInt();
      int examples = in.readInt();
      if (k < 1 || k > vocab || examples < 0) {
        throw new IOException(file + ": bad header k=" + k + " vocab=" + vocab);
      }
      int[] offsets = new int[examples + 1];
      for (int e = 0; e < examples; e++) {
        offsets[e + 1] = Math.addExact(offsets[e], in.readInt());
      }
      int positions = offsets[examples];
      int[] ids = new int[Math.multiplyExact(positions, k)];
      for (int i = 0; i < ids.length; i++) {
        ids[i] = in.readInt();
        if (ids[i] < 0 || ids[i] >= vocab) {
          throw new IOException(file + ": token id " + ids[i] + " outside [0, " + vocab + ")");
        }
      }
      float[] logProbs = new float[ids.length];
      for (int i = 0; i < logProbs.length; i++) {
        logProbs[i] = in.readFloat();
      }
      float[] rest = new float[positions];
      for (int i = 0; i < rest.length; i++) {
        rest[i] = in.readFloat();
      }
      if (in.read() != -1) {
        throw new IOException(file + " has bytes after its last position");
      }
      return new TopKLogits(fingerprint, k, vocab, offsets, ids, logProbs, rest);
    } catch (EOFException e) {
      throw new IOException(file + " is truncated", e);
    }
  }

  @Override
  public boolean equals(Object o) {
    return o instanceof TopKLogits t
        && fingerprint.equals(t.fingerprint)
        && k == t.k
        && vocab == t.vocab
        && Arrays.equals(offsets, t.offsets)
        && Arrays.equals(ids, t.ids)
        && Arrays.equals(logProbs, t.logProbs)
        && Arrays.equals(restLogMass, t.restLogMass);
  }

  @Override
  public int hashCode() {
    return fingerprint.hashCode() * 31 + Arrays.hashCode(ids);
  }

  @Override
  public String toString() {
    return "TopKLogits[k="
        + k
        + ", vocab="
        + vocab
        + ", examples="
        + examples()
        + ", positions="
        + positions()
        + "]";
  }
}
