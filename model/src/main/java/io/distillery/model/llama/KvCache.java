package io.distillery.model.llama;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDArrays;
import ai.djl.ndarray.NDList;
import ai.djl.ndarray.NDManager;

/**
 * Keys and values of past positions, per layer, for incremental decoding: each forward with a cache
 * attends to everything cached so far and appends its own positions. Keys are stored after RoPE,
 * {@code [batch, kv_heads, positions, head_dim]}, before the grouped-query repeat, so memory scales
 * with the key/value heads. With a sliding window (Mistral) every position is kept and the mask
 * hides the old ones, so memory grows with the sequence, not the window.
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
