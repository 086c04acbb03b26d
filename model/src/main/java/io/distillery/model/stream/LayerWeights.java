package io.distillery.model.stream;

import io.distillery.model.safetensors.TensorCodec;
import io.distillery.model.safetensors.TensorData;
import io.distillery.model.safetensors.TensorSource;
import java.util.Collections;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.Map;
import java.util.SequencedMap;
import java.util.Set;

/**
 * The tensors of the one decoder layer the streamer holds, widened to F32 (up front, or when first
 * asked for: {@link #stored}), by transformers name, in checkpoint order. A visitor may change
 * values in place or {@link #set} them (the re-run and the output see the change), and may {@link
 * #emit} the stored form of a module (e.g. its quantized tensors), which then replaces the module's
 * weight in the output.
 */
public final class LayerWeights {

  private final int layer;
  private final SequencedMap<String, float[]> values;
  private final Map<String, long[]> shapes;
  private final Map<String, SequencedMap<String, TensorSource>> emitted = new LinkedHashMap<>();
  private final boolean reruns;
  private final Set<String> names;
  private final Map<String, TensorData> stored;

  LayerWeights(int layer, SequencedMap<String, float[]> values, Map<String, long[]> shapes) {
    this(layer, values, shapes, true);
  }

  LayerWeights(
      int layer, SequencedMap<String, float[]> values, Map<String, long[]> shapes, boolean reruns) {
    this(layer, values, shapes, reruns, new LinkedHashMap<>());
  }

  /**
   * A layer whose tensors are widened only when first asked for ({@link #get}): until then each is
   * {@link #stored} as the checkpoint holds it, so a visitor that can work on the stored bytes
   * (round-to-nearest quantization) never makes the F32 copy.
   *
   * @param stored the tensors' stored bytes, in checkpoint order (views valid during the rewrite)
   */
  static LayerWeights lazy(
      int layer,
      SequencedMap<String, TensorData> stored,
      Map<String, long[]> shapes,
      boolean reruns) {
    return new LayerWeights(layer, new LinkedHashMap<>(), shapes, reruns, stored);
  }

  private LayerWeights(
      int layer,
      SequencedMap<String, float[]> values,
      Map<String, long[]> shapes,
      boolean reruns,
      SequencedMap<String, TensorData> stored) {
    this.layer = layer;
    this.values = values;
    this.shapes = shapes;
    this.reruns = reruns;
    // one of the two holds the whole layer (widened up front, or lazily), in checkpoint order
    Set<String> all = new LinkedHashSet<>(values.keySet());
    all.addAll(stored.keySet());
    this.names = Collections.unmodifiableSet(all);
    this.stored = new HashMap<>(stored);
  }

  /**
   * Whether the layer is run again with these values after the rewrite (a sequential pass, whose
   * outputs the next layer sees). When false, nothing reads the dense values of an {@link #emit
   * emitted} module again, so a visitor need not compute its dequantized weight.
   */
  public boolean reruns() {
    return reruns;
  }

  /**
   * The tensor as the input checkpoint stores it (dtype, shape, a view of its bytes), while its
   * values have not been widened: null once {@link #get} or {@link #set} made them live values
   * (which may have been changed since), and always null when the streamer widened the layer up
   * front (it does when the layer runs forward).
   */
  public TensorData stored(String name) {
    return stored.get(name);
  }

  public int layer() {
    return layer;
  }

  /** Tensor names, in checkpoint order. */
  public Set<String> names() {
    return names;
  }

  /** The live values of a tensor, {@code [rows, cols]} row-major for a weight. */
  public float[] get(String name) {
    float[] v = values.get(name);
    if (v == null) {
      TensorData bytes = stored.remove(name);
      if (bytes == null) {
        throw new IllegalArgumentException("layer " + layer + " has no tensor '" + name + "'");
      }
      v = TensorCodec.decodeFloats(bytes.data(), bytes.dtype());
      values.put(name, v);
    }
    return v;
  }

  public long[] shape(String name) {
    if (!names.contains(name)) {
      throw new IllegalArgumentException("layer " + layer + " has no tensor '" + name + "'");
    }
    return shapes.get(name).clone();
  }

  /** Replaces a tensor's values (same element count). */
  public void set(String name, float[] replacement) {
    long elements = 1;
    for (long dim : shape(name)) {
      elements *= dim;
    }
    if (elements != replacement.length) {
      throw new IllegalArgumentException(
          "'" + name + "' has " + elements + " elements, got " + replacement.length);
    }
    stored.remove(name);
    values.put(name, replacement);
  }

  /**
   * Stores {@code module} as {@code tensors} (full names, in write order) instead of its dense
   * weight; the dense values stay what the re-run computes with (set them to the dequantized
   * weight).
   */
  public void emit(String module, SequencedMap<String, TensorSource> tensors) {
    if (!names.contains(module + ".weight")) {
      throw new IllegalArgumentException("layer " + layer + " has no module '" + module + "'");
    }
    emitted.put(module, tensors);
  }

  SequencedMap<String, TensorSource> emitted(String module) {
    return emitted.get(module);
  }

  /** Every tensor's live values, in checkpoint order (widening those not yet widened). */
  SequencedMap<String, float[]> values() {
    if (!stored.isEmpty()) {
      SequencedMap<String, float[]> ordered = new LinkedHashMap<>();
      for (String name : names) {
        ordered.put(name, get(name));
      }
      values.clear();
      values.putAll(ordered);
    }
    return values;
  }
}
