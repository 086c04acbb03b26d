package io.distillery.model.config;

import java.util.Objects;

/**
 * The {@code rope_scaling} entry of a config: how rotary frequencies are stretched for contexts
 * longer than the model was trained on. The frequency formulas live in the forward pass ({@code
 * llama.RotaryEmbedding}); this record only carries validated parameters.
 *
 * @param type linear (positions divided by factor), dynamic (NTK-aware base growth past the trained
 *     length) or llama3 (per-frequency blend, Llama 3.1)
 * @param factor the stretch factor, > 0 (>= 1 for llama3)
 * @param lowFreqFactor llama3 only
 * @param highFreqFactor llama3 only, > lowFreqFactor
 * @param originalMaxPositionEmbeddings the trained context length (llama3 required; dynamic
 *     optional, 0 = the config's max_position_embeddings)
 */
public record RopeScaling(
    Type type,
    double factor,
    double lowFreqFactor,
    double highFreqFactor,
    int originalMaxPositionEmbeddings) {

  /** Scaling types implemented here, spelled as in {@code rope_type}. */
  public enum Type {
    LINEAR("linear"),
    DYNAMIC("dynamic"),
    LLAMA3("llama3");

    private final String jsonName;

    Type(String jsonName) {
      this.jsonName = jsonName;
    }

    public String jsonName() {
      return jsonName;
    }

    static Type fromJsonName(String name) {
      for (Type type : values()) {
        if (type.jsonName.equals(name)) {
          return type;
        }
      }
      return null;
    }
  }

  public RopeScaling {
    Objects.requireNonNull(type, "type");
    if (!(factor > 0) || Double.isInfinite(factor)) {
      throw new IllegalArgumentException(
          "rope_scaling.factor must be a positive number, got " + factor);
    }
    if (originalMaxPositionEmbeddings < 0) {
      throw new IllegalArgumentException(
          "rope_scaling.original_max_position_embeddings must be positive");
    }
    if (type == Type.LLAMA3) {
      if (factor < 1) {
        throw new IllegalArgumentException(
            "rope_scaling.factor must be >= 1 for llama3, got " + factor);
      }
      if (!(lowFreqFactor > 0) || !(highFreqFactor > lowFreqFactor)) {
        throw new IllegalArgumentException(
            "llama3 rope_scaling needs 0 < low_freq_factor < high_freq_factor,"
                + " got "
                + lowFreqFactor
                + " and "
                + highFreqFactor);
      }
      if (originalMaxPositionEmbeddings == 0) {
        throw new IllegalArgumentException(
            "llama3 rope_scaling needs original_max_position_embeddings");
      }
    }
  }

  public static RopeScaling linear(double factor) {
    return new RopeScaling(Type.LINEAR, factor, 0, 0, 0);
  }

  public static RopeScaling dynamic(double factor) {
    return new RopeScaling(Type.DYNAMIC, factor, 0, 0, 0);
  }

  public static RopeScaling llama3(
      double factor,
      double lowFreqFactor,
      double highFreqFactor,
      int originalMaxPositionEmbeddings) {
    return new RopeScaling(
        Type.LLAMA3, factor, lowFreqFactor, highFreqFactor, originalMaxPositionEmbeddings);
  }
}
