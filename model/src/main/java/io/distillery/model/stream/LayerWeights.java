package io.distillery.model.stream;

import io.distillery.model.safetensors.TensorSource;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.SequencedMap;
import java.util.Set;

/**
 * The tensors of the one decoder layer the streamer holds, widened to F32, by transformers name, in
 * checkpoint order. A visitor may change values in place or {@link #set} them (the re-run and the
 * output see the change), and may {@link #emit} the stored form of a module (e.g. its quantized
 * tensors), which then replaces the module's weight in the output.
 */
public final class LayerWeights {

  private final int layer;
  private final SequencedMap<String, float[]> values;
  private final Map<String, long[]> shapes;
  private final Map<String, SequencedMap<String, TensorSource>> emitted = new LinkedHashMap<>();

  LayerWeights(int layer, SequencedMap<String, float[]> values, Map<String, long[]> shapes) {
    this.layer = layer;
    this.values = values;
    this.shapes = shapes;
  }

  public int layer() {
    return layer;
  }

  /** Tensor names, in checkpoint order. */
  public Set<String> names() {
    return Collections.unmodifiableSet(values.keySet());
  }

  /** The live values of a tensor, {@code [rows, cols]} row-major for a weight. */
  public float[] get(String name) {
    float[] v = values.get(name);
    if (v == null) {
      throw new IllegalArgumentException("layer " + layer + " has no tensor '" + name + "'");
    }
    return v;
  }

  public long[] shape(String name) {
    get(name);
    return shapes.get(name).clone();
  }

  /** Replaces a tensor's values (same element count). */
  public void set(String name, float[] replacement) {
    if (get(name).length != replacement.length) {
      throw new IllegalArgumentException(
          "'" + name + "' has " + get(name).length + " elements, got " + replacement.length);
    }
    values.put(name, replacement);
  }

  /**
   * Stores {@code module} as {@code tensors} (full names, in write order) instead of its dense
   * weight; the dense values stay what the re-run computes with (set them to the dequantized
   * weight).
   */
  public void emit(String module, SequencedMap<String, TensorSource> tensors) {
    if (!values.containsKey(module + ".weight")) {
      throw new IllegalArgumentException("layer " + layer + " has no module '" + module + "'");
    }
    emitted.put(module, tensors);
  }

  SequencedMap<String, TensorSource> emitted(String module) {
    return emitted.get(module);
  }

  SequencedMap<String, float[]> values() {
    return values;
  }
}
