package io.distillery.distiller.teacher;

import java.util.Arrays;

/**
 * Picks, for many positions at once, the {@code k} largest logits and the log-sum-exp of all of
 * them from logits that arrive in chunks of vocabulary ids in ascending order (a whole row at once
 * from the in-memory teacher, or the streamed teacher's LM head a chunk of rows at a time): a
 * min-heap of k per position and a running max / scaled sum, so the full row is never needed.
 * {@link #finish} turns them into log-probabilities and the log of the mass outside the top k,
 * computed in double as log(1 - sum of the kept probabilities).
 */
public final class TopKSelector {

  private final int positions;
  private final int k;
  private final int vocab;
  private final float[] values;
  private final int[] ids;
  private final int[] size;
  private final double[] max;
  private final double[] sum;

  public TopKSelector(int positions, int k, int vocab) {
    if (k < 1 || k > vocab) {
      throw new IllegalArgumentException("k must be in [1, vocab=" + vocab + "], got " + k);
    }
    this.positions = positions;
    this.k = k;
    this.vocab = vocab;
    this.values = new float[Math.multiplyExact(positions, k)];
    this.ids = new int[values.length];
    this.size = new int[positions];
    this.max = new double[positions];
    this.sum = new double[positions];
    Arrays.fill(max, Double.NEGATIVE_INFINITY);
  }

  /** Bytes held while selecting. */
  public static long bytes(long positions, int k) {
    return positions * (8L * k + 20);
  }

  /**
   * Offers logits of ids {@code [from, from + rows)} at position {@code position}: {@code
   * logits[offset + v]} is the logit of id {@code from + v}. Chunks of one position must come in
   * ascending id order (ties then keep the lower id).
   */
  public void offer(int position, int from, float[] logits, int offset, int rows) {
    double m = max[position];
    for (int v = 0; v < rows; v++) {
      m = Math.max(m, logits[offset + v]);
    }
    double s = sum[position] == 0 ? 0 : sum[position] * Math.exp(max[position] - m);
    int base = position * k;
    for (int v = 0; v < rows; v++) {
      float x = logits[offset + v];
      s += Math.exp(x - m);
      int n = size[position];
      if (n < k) {
        values[base + n] = x;
        ids[base + n] = from + v;
        size[position] = n + 1;
        siftUp(base, n);
      } else if (x > values[base]) { // equal: the kept one has the lower id
        values[base] = x;
        ids[base] = from + v;
        siftDown(base, k);
      }
    }
    sum[position] = s;
    max[position] = m;
  }

  /** The heap's order: a is "worse" (nearer the root) than b. */
  private boolean worse(int a, int b) {
    return values[a] < values[b] || values[a] == values[b] && ids[a] > ids[b];
  }

  private void siftUp(int base, int i) {
    while (i > 0) {
      int parent = (i - 1) / 2;
      if (!worse(base + i, base + parent)) {
        return;
      }
      swap(base + i, base + parent);
      i = parent;
    }
  }

  private void siftDown(int base, int n) {
    int i = 0;
    while (true) {
      int l = 2 * i + 1;
      int worst = i;
      if (l < n && worse(base + l, base + worst)) {
        worst = l;
      }
      if (l + 1 < n && worse(base + l + 1, base + worst)) {
        worst = l + 1;
      }
      if (worst == i) {
        return;
      }
      swap(base + i, base + worst);
      i = worst;
    }
  }

  private void swap(int a, int b) {
    float v = values[a];
    values[a] = values[b];
    values[b] = v;
    int id = ids[a];
    ids[a] = ids[b];
    ids[b] = id;
  }

  /**
   * The selected ids of every position, most likely first, as {@link TopKLogits} with {@code
   * offsets} splitting the positions into examples.
   *
   * @throws IllegalStateException if a position has not seen the whole vocabulary
   */
  public TopKLogits finish(String fingerprint, int[] offsets) {
    if (offsets[offsets.length - 1] != positions) {
      throw new IllegalArgumentException(
          "offsets cover " + offsets[offsets.length - 1] + " positions, selected " + positions);
    }
    int[] outIds = new int[values.length];
    float[] logProbs = new float[values.length];
    float[] rest = new float[positions];
    Integer[] order = new Integer[k];
    for (int p = 0; p < positions; p++) {
      if (size[p] != k) {
        throw new IllegalStateException("position " + p + " saw " + size[p] + " of k=" + k);
      }
      int base = p * k;
      double lse = max[p] + Math.log(sum[p]);
      for (int i = 0; i < k; i++) {
        order[i] = base + i;
      }
      Arrays.sort(order, (a, b) -> worse(a, b) ? 1 : worse(b, a) ? -1 : 0);
      double kept = 0;
      for (int i = 0; i < k; i++) {
        double logP = values[order[i]] - lse;
        outIds[base + i] = ids[order[i]];
        logProbs[base + i] = (float) logP;
        kept += Math.exp(logP);
      }
      double left = 1 - kept;
      rest[p] = k == vocab || left <= 0 ? Float.NEGATIVE_INFINITY : (float) Math.log(left);
    }
    return new TopKLogits(fingerprint, k, vocab, offsets, outIds, logProbs, rest);
  }
}
