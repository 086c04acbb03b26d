package io.distillery.model.llama;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.index.NDIndex;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Objects;

/**
 * Continuous batching of {@link ScoredGeneration}: sequences join and leave while others are being
 * decoded, and every decode step runs one forward pass for all of them. The prompts {@linkplain
 * #admit(List) admitted} together run in one forward (shorter ones padded on the left, in a KV
 * cache of their own), then that cache joins the shared one as new rows, right-aligned so that
 * every row appends its next position at the same column; each row sees only its own columns (a
 * mask hides the others' padding) and is rotated at its own positions, so a row gets the tokens it
 * would get alone (logits equal up to float rounding: the batched products sum in another order).
 * Per-token cost is then one op dispatch per op for all rows instead of one per row, which is what
 * sets the pace of small models.
 *
 * <p>Each sequence has the semantics of {@link ScoredGeneration#generate}: its own sampler, stop
 * token and deadline (checked before each of its tokens), and the log-probability of each token
 * under the model. Not thread-safe: one thread admits and steps.
 */
public final class BatchedGeneration implements AutoCloseable {

  private static final NDIndex LAST_COLUMN = new NDIndex(":, -1, :");

  private final LlamaModel model;
  private final NDManager manager;
  private KvCache cache;
  private final List<Sequence> rows = new ArrayList<>();

  /** One sequence being generated; {@link #result()} once {@link #done()}. */
  public static final class Sequence {
    private final int maxNewTokens;
    private final TokenSampler sampler;
    private final int stopTokenId;
    private final long deadlineNanos;
    private final int[] tokens;
    private final double[] logProbs;
    private int count;
    private boolean stopped;
    private boolean timedOut;
    private boolean done;
    private int start;
    private int position;

    private Sequence(int maxNewTokens, SamplingParams params, int stopTokenId, long deadline) {
      this.maxNewTokens = maxNewTokens;
      this.sampler = new TokenSampler(params);
      this.stopTokenId = stopTokenId;
      this.deadlineNanos = deadline;
      this.tokens = new int[maxNewTokens];
      this.logProbs = new double[maxNewTokens];
    }

    public boolean done() {
      return done;
    }

    /** What {@link ScoredGeneration#generate} returns for this sequence. */
    public ScoredGeneration.Result result() {
      if (!done) {
        throw new IllegalStateException("sequence not finished");
      }
      return new ScoredGeneration.Result(
          Arrays.copyOf(tokens, count), Arrays.copyOf(logProbs, count), stopped, timedOut);
    }

    /** Records the token picked from {@code logits}; marks the sequence done when it ends. */
    private void accept(float[] logits) {
      int next = sampler.next(logits);
      tokens[count] = next;
      logProbs[count] = ScoredGeneration.logSoftmaxAt(logits, next);
      count++;
      if (next == stopTokenId) {
        stopped = true;
        done = true;
      } else if (count == maxNewTokens) {
        done = true;
      }
    }

    /** Before a token: past the deadline, the sequence ends here. */
    private boolean expired() {
      if (System.nanoTime() - deadlineNanos > 0) {
        timedOut = true;
        done = true;
      }
      return done;
    }

    private int last() {
      return tokens[count - 1];
    }
  }

  public BatchedGeneration(LlamaModel model) {
    this.model = Objects.requireNonNull(model, "model");
    this.manager = model.manager().newSubManager();
    this.manager.setName("llama-batched-generation");
    this.cache = model.newKvCache();
  }

  /** Sequences being decoded (admitted and not done). */
  public int active() {
    return rows.size();
  }

  /** A sequence to start: its prompt and what {@link ScoredGeneration#generate} takes. */
  public record Request(
      int[] prompt, int maxNewTokens, SamplingParams params, int stopTokenId, long deadlineNanos) {

    public Request {
      if (prompt.length == 0) {
        throw new IllegalArgumentException("prompt must not be empty");
      }
      if (maxNewTokens < 0) {
        throw new IllegalArgumentException(
            "maxNewTokens must not be negative, got " + maxNewTokens);
      }
      Objects.requireNonNull(params, "params");
    }
  }

  /**
   * Runs {@code prompt} and picks the first token; the sequence then joins the batch, unless it is
   * already done (stop token first, one token asked, none asked, or past its deadline).
   */
  public Sequence admit(
      int[] prompt, int maxNewTokens, SamplingParams params, int stopTokenId, long deadlineNanos) {
    return admit(List.of(new Request(prompt, maxNewTokens, params, stopTokenId, deadlineNanos)))
        .getFirst();
  }

  /**
   * Runs the prompts of {@code requests} in one forward (shorter prompts padded on the left, the
   * padding hidden from them) and picks each one's first token; the sequences not done join the
   * batch. Returns the sequences in the order of {@code requests}.
   */
  public List<Sequence> admit(List<Request> requests) {
    List<Sequence> admitted = new ArrayList<>(requests.size());
    List<Sequence> running = new ArrayList<>();
    List<int[]> prompts = new ArrayList<>();
    for (Request r : requests) {
      Sequence s = new Sequence(r.maxNewTokens(), r.params(), r.stopTokenId(), r.deadlineNanos());
      admitted.add(s);
      if (r.maxNewTokens() == 0) {
        s.done = true;
      } else if (!s.expired()) {
        running.add(s);
        prompts.add(r.prompt());
      }
    }
    if (running.isEmpty()) {
      return admitted;
    }
    int n = running.size();
    int longest = prompts.stream().mapToInt(p -> p.length).max().orElseThrow();
    int[][] tokens = new int[n][longest];
    int[] positions = new int[n];
    int[] starts = new int[n];
    for (int b = 0; b < n; b++) {
      int[] p = prompts.get(b);
      int padding = longest - p.length;
      Arrays.fill(tokens[b], 0, padding, p[0]);
      System.arraycopy(p, 0, tokens[b], padding, p.length);
      positions[b] = -padding;
      starts[b] = padding;
    }
    KvCache fresh = model.newKvCache();
    try {
      float[] last;
      try (NDManager step = manager.newSubManager()) {
        NDArray logits = model.forwardRows(step, tokens, positions, starts, fresh);
        last = logits.get(LAST_COLUMN).toFloatArray();
      }
      int vocab = last.length / n;
      for (int b = 0; b < n; b++) {
        running.get(b).accept(Arrays.copyOfRange(last, b * vocab, (b + 1) * vocab));
      }
      int[] keep = new int[n];
      int kept = 0;
      for (int b = 0; b < n; b++) {
        if (!running.get(b).done) {
          keep[kept++] = b;
        }
      }
      if (kept > 0) {
        fresh.keepRows(Arrays.copyOf(keep, kept));
        int padded = cache.joinRows(fresh);
        for (Sequence r : rows) {
          r.start += padded;
        }
        int offset = cache.length() - longest;
        for (int i = 0; i < kept; i++) {
          int b = keep[i];
          Sequence s = running.get(b);
          s.start = offset + starts[b];
          s.position = prompts.get(b).length;
          rows.add(s);
        }
      }
    } finally {
      fresh.close();
    }
    return admitted;
  }

  /**
   * One token for every active sequence (those past their deadline end first, without one); returns
   * the sequences that ended in this step.
   */
  public List<Sequence> step() {
    List<Sequence> finished = new ArrayList<>();
    for (Sequence s : rows) {
      if (s.expired()) {
        finished.add(s);
      }
    }
    if (!finished.isEmpty()) {
      retire();
    }
    if (rows.isEmpty()) {
      return finished;
    }
    int n = rows.size();
    int[] tokens = new int[n];
    int[] positions = new int[n];
    int[] starts = new int[n];
    for (int b = 0; b < n; b++) {
      Sequence s = rows.get(b);
      tokens[b] = s.last();
      positions[b] = s.position;
      starts[b] = s.start;
    }
    int[][] fed = new int[n][];
    for (int b = 0; b < n; b++) {
      fed[b] = new int[] {tokens[b]};
    }
    float[] all;
    try (NDManager step = manager.newSubManager()) {
      all = model.forwardRows(step, fed, positions, starts, cache).toFloatArray();
    } catch (RuntimeException e) {
      // the cache is unusable now: end every row with the failure, start over empty
      cache.close();
      cache = model.newKvCache();
      rows.clear();
      throw e;
    }
    int vocab = all.length / n;
    for (int b = 0; b < n; b++) {
      Sequence s = rows.get(b);
      s.position++;
      s.accept(Arrays.copyOfRange(all, b * vocab, (b + 1) * vocab));
      if (s.done) {
        finished.add(s);
      }
    }
    retire();
    return finished;
  }

  /** Removes done rows from the cache, and the left columns no remaining row sees. */
  private void retire() {
    int kept = 0;
    int[] keep = new int[rows.size()];
    for (int b = 0; b < rows.size(); b++) {
      if (!rows.get(b).done) {
        keep[kept++] = b;
      }
    }
    if (kept == rows.size()) {
      return;
    }
    cache.keepRows(Arrays.copyOf(keep, kept));
    rows.removeIf(Sequence::done);
    if (rows.isEmpty()) {
      return;
    }
    int drop = Integer.MAX_VALUE;
    for (Sequence s : rows) {
      drop = Math.min(drop, s.start);
    }
    cache.dropLeftColumns(drop);
    for (Sequence s : rows) {
      s.start -= drop;
    }
  }

  /** Frees the shared cache; sequences not done are abandoned. */
  @Override
  public void close() {
    rows.clear();
    cache.close();
    manager.close();
  }
}
