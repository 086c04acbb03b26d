package io.distillery.model.llama;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDArrays;
import ai.djl.ndarray.NDList;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.index.NDIndex;
import ai.djl.ndarray.types.Shape;

/**
 * Keys and values of past positions, per layer, for incremental decoding: each forward with a cache
 * attends to everything cached so far and appends its own positions. Keys are stored after RoPE,
 * {@code [batch, kv_heads, positions, head_dim]}, before the grouped-query repeat, so memory scales
 * with the key/value heads. With a sliding window (Mistral) every position is kept and the mask
 * hides the old ones, so memory grows with the sequence, not the window.
 *
 * <p>Rows can join ({@link #joinRows}, right-aligned, the others padded on the left) and leave
 * ({@link #keepRows}) between forwards, for {@link BatchedGeneration}, whose mask hides each row's
 * padding.
 *
 * <p>Owns its arrays in its own NDManager; close it when the sequence is done. Not thread-safe: one
 * sequence batch, one caller. A forward that fails part-way leaves the cache unusable.
 */
public final class KvCache implements AutoCloseable {

  private final LlamaModel owner;
  private final NDManager manager;
  private final NDArray[] keys;
  private final NDArray[] values;
  private int length;
  private int batch = -1;
  private boolean broken;

  KvCache(LlamaModel owner, NDManager manager, int layers) {
    this.owner = owner;
    this.manager = manager;
    this.keys = new NDArray[layers];
    this.values = new NDArray[layers];
  }

  /** Positions cached so far; the next forward starts at this position. */
  public int length() {
    return length;
  }

  void begin(LlamaModel model, int batchSize) {
    if (model != owner) {
      throw new IllegalArgumentException("this KV cache belongs to another model");
    }
    if (!manager.isOpen()) {
      throw new IllegalStateException("KV cache is closed");
    }
    if (broken) {
      throw new IllegalStateException("KV cache is unusable after a failed forward pass");
    }
    if (batch != -1 && batch != batchSize) {
      throw new IllegalArgumentException(
          "KV cache holds batch size " + batch + ", got " + batchSize);
    }
    batch = batchSize;
  }

  /** Appends this step's keys and values of one layer; returns all keys and values so far. */
  NDArray[] append(int layer, NDArray newKeys, NDArray newValues) {
    keys[layer] = concat(keys[layer], newKeys);
    values[layer] = concat(values[layer], newValues);
    return new NDArray[] {keys[layer], values[layer]};
  }

  private NDArray concat(NDArray past, NDArray step) {
    if (past == null) {
      step.attach(manager);
      return step;
    }
    NDArray joined = NDArrays.concat(new NDList(past, step), 2);
    joined.attach(manager);
    past.close();
    return joined;
  }

  /**
   * Moves the rows of {@code other} (its arrays change owner; close {@code other} after) in as new
   * last rows, right-aligned: their positions end at this cache's last column. When {@code other}
   * is longer than this cache, every row here is first padded on the left with zero columns.
   * Returns how many columns were added on the left of the existing rows (0 when none).
   */
  int joinRows(KvCache other) {
    if (other.batch < 1 || other.length == 0 || other.broken || broken) {
      throw new IllegalArgumentException("can join only a filled cache into a usable one");
    }
    if (batch <= 0) {
      for (int l = 0; l < keys.length; l++) {
        keys[l] = adopt(other.keys[l]);
        values[l] = adopt(other.values[l]);
        other.keys[l] = null;
        other.values[l] = null;
      }
      batch = other.batch;
      length = other.length;
      return 0;
    }
    int padded = Math.max(0, other.length - length);
    int otherPadded = length + padded - other.length;
    for (int l = 0; l < keys.length; l++) {
      keys[l] = concat(leftPad(keys[l], padded), leftPad(other.keys[l], otherPadded), 0);
      values[l] = concat(leftPad(values[l], padded), leftPad(other.values[l], otherPadded), 0);
      other.keys[l] = null;
      other.values[l] = null;
    }
    length += padded;
    batch += other.batch;
    return padded;
  }

  /** Keeps only the rows {@code keep} (ascending), in that order. */
  void keepRows(int[] keep) {
    if (keep.length == batch) {
      return;
    }
    if (keep.length == 0) {
      for (int l = 0; l < keys.length; l++) {
        keys[l].close();
        values[l].close();
        keys[l] = null;
        values[l] = null;
      }
      batch = -1;
      length = 0;
      return;
    }
    long[] rows = new long[keep.length];
    for (int i = 0; i < keep.length; i++) {
      rows[i] = keep[i];
    }
    try (NDArray index = manager.create(rows)) {
      for (int l = 0; l < keys.length; l++) {
        keys[l] = replace(keys[l], keys[l].get(new NDIndex("{}", index)));
        values[l] = replace(values[l], values[l].get(new NDIndex("{}", index)));
      }
    }
    batch = keep.length;
  }

  /** Drops the first {@code columns} positions of every row (padding no row sees any more). */
  void dropLeftColumns(int columns) {
    if (columns <= 0) {
      return;
    }
    if (columns >= length) {
      throw new IllegalArgumentException("cannot drop " + columns + " of " + length + " columns");
    }
    NDIndex rest = new NDIndex(":, :, " + columns + ":, :");
    for (int l = 0; l < keys.length; l++) {
      keys[l] = replace(keys[l], keys[l].get(rest));
      values[l] = replace(values[l], values[l].get(rest));
    }
    length -= columns;
  }

  private NDArray adopt(NDArray array) {
    array.attach(manager);
    return array;
  }

  private NDArray replace(NDArray old, NDArray replacement) {
    replacement.attach(manager);
    old.close();
    return replacement;
  }

  /** {@code array} with {@code columns} zero positions in front (itself when none), owned here. */
  private NDArray leftPad(NDArray array, int columns) {
    if (columns == 0) {
      return adopt(array);
    }
    Shape s = array.getShape();
    try (NDArray zeros = manager.zeros(new Shape(s.get(0), s.get(1), columns, s.get(3)))) {
      NDArray joined = NDArrays.concat(new NDList(zeros, array), 2);
      joined.attach(manager);
      array.close();
      return joined;
    }
  }

  /** Concatenation along {@code axis} of two arrays owned here; both are closed. */
  private NDArray concat(NDArray first, NDArray second, int axis) {
    NDArray joined = NDArrays.concat(new NDList(first, second), axis);
    joined.attach(manager);
    first.close();
    second.close();
    return joined;
  }

  void commit(int positions) {
    length += positions;
  }

  void markBroken() {
    broken = true;
  }

  @Override
  public void close() {
    manager.close();
  }
}
