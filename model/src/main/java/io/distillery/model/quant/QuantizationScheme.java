package io.distillery.model.quant;

import io.distillery.model.config.LlamaConfig;
import io.distillery.model.safetensors.DType;
import java.util.List;
import java.util.Objects;
import java.util.Set;

/**
 * What a compressed-tensors checkpoint declares in its {@code quantization_config}: the weight
 * kind, its bit width, the group size, whether the weights are symmetric, whether input activations
 * are statically quantized per tensor (W8A8), the dtype scales are stored in, the modules left
 * dense, and an optional 2:4 sparsity declaration.
 *
 * <p>The compressed-tensors format of each scheme follows the library's own choice
 * (compressed-tensors {@code compressors/format.py} with {@code can_compress} of each compressor,
 * 0.12.2 .. 0.18.0): integer weights without input activations are {@code pack-quantized} whatever
 * their width (so W8A16 is 8-bit pack-quantized, never {@code int-quantized}: vLLM's {@code
 * compressed_tensors.py} {@code _quantization_scheme_map_from_config} asserts {@code weights.type
 * == FLOAT} when an activation format has no input activations); INT8 weights with static input
 * activations are {@code int-quantized}; FP8 weights alone are {@code naive-quantized}.
 *
 * @param kind the stored weight kind
 * @param groupSize input columns per scale of {@link QuantizedWeight.Kind#INT4_GROUP} weights
 * @param staticInputActivations static per-tensor INT8 input scales ({@code <m>.input_scale}, W8A8)
 * @param ignore the linear modules left dense (full names); {@code lm_head} is always added
 * @param bits the stored width of integer codes: 2, 3, 4 or 8 for group weights, 8 for channel ones
 * @param symmetric whether integer weights have no zero point
 * @param scaleDtype how {@code weight_scale} and {@code input_scale} are stored: the model's dtype,
 *     as llm-compressor's observers leave them (F32, F16 or BF16)
 * @param sparsity the 2:4 sparsity the weights carry (compressed-tensors' {@code sparsity_config}),
 *     or null
 */
public record QuantizationScheme(
    QuantizedWeight.Kind kind,
    int groupSize,
    boolean staticInputActivations,
    List<String> ignore,
    int bits,
    boolean symmetric,
    DType scaleDtype,
    Sparsity sparsity) {

  /**
   * Widths {@code pack-quantized} is written in here (pack factor 32 / bits, see {@link
   * Int32Packing}).
   */
  public static final Set<Integer> PACKED_BITS = Set.of(2, 3, 4, 8);

  /**
   * A {@code sparsity_config} as compressed-tensors' {@code config/base.py} {@code
   * SparsityCompressionConfig} and {@code config/dense.py} define it (the dense-stored form, what
   * llm-compressor 0.10's {@code sparsity_metadata_config.py} writes for a 2:4 model whose weights
   * stay uncompressed).
   *
   * @param structure {@code sparsity_structure}, e.g. {@code 2:4}
   * @param targets the modules that are sparse (full names)
   * @param globalSparsity the share of zeros over all targets
   */
  public record Sparsity(String structure, List<String> targets, double globalSparsity) {

    public Sparsity {
      Objects.requireNonNull(structure, "structure");
      targets = List.copyOf(targets);
      if (!(globalSparsity >= 0 && globalSparsity <= 1)) {
        throw new IllegalArgumentException(
            "global sparsity must lie in [0, 1], got " + globalSparsity);
      }
    }
  }

  public QuantizationScheme {
    Objects.requireNonNull(kind, "kind");
    Objects.requireNonNull(scaleDtype, "scaleDtype");
    ignore = List.copyOf(ignore);
    if (staticInputActivations && kind != QuantizedWeight.Kind.INT8_CHANNEL) {
      throw new IllegalArgumentException(
          "static input activations are written for INT8 weights (W8A8) only");
    }
    if (!scaleDtype.isFloatingPoint()) {
      throw new IllegalArgumentException(
          "scales are stored in F32, F16 or BF16, not " + scaleDtype);
    }
    switch (kind) {
      case INT4_GROUP -> {
        if (!PACKED_BITS.contains(bits)) {
          throw new IllegalArgumentException(
              "group weights are packed in " + PACKED_BITS + " bits, not " + bits);
        }
        if (groupSize <= 0) {
          throw new IllegalArgumentException("group size must be positive, got " + groupSize);
        }
      }
      case INT8_CHANNEL, FP8_CHANNEL -> {
        if (bits != 8) {
          throw new IllegalArgumentException(kind + " weights are 8-bit, not " + bits);
        }
        if (!symmetric) {
          throw new IllegalArgumentException(kind + " weights are symmetric (no zero point)");
        }
      }
    }
    VllmConstraints.checkFusedShards(ignore);
  }

  /**
   * The scheme as this platform wrote it before symmetric INT4 and dtype scales: INT4 asymmetric,
   * 4-bit, F32 scales. Kept for the callers that build a scheme from these four fields.
   */
  public QuantizationScheme(
      QuantizedWeight.Kind kind,
      int groupSize,
      boolean staticInputActivations,
      List<String> ignore) {
    this(
        kind,
        groupSize,
        staticInputActivations,
        ignore,
        kind.bits(),
        kind != QuantizedWeight.Kind.INT4_GROUP,
        DType.F32,
        null);
  }

  /** A copy with {@code symmetric}. */
  public QuantizationScheme withSymmetric(boolean value) {
    return new QuantizationScheme(
        kind, groupSize, staticInputActivations, ignore, bits, value, scaleDtype, sparsity);
  }

  /** A copy with the code width {@code value}. */
  public QuantizationScheme withBits(int value) {
    return new QuantizationScheme(
        kind, groupSize, staticInputActivations, ignore, value, symmetric, scaleDtype, sparsity);
  }

  /** A copy whose scales are stored in {@code value}. */
  public QuantizationScheme withScaleDtype(DType value) {
    return new QuantizationScheme(
        kind, groupSize, staticInputActivations, ignore, bits, symmetric, value, sparsity);
  }

  /** A copy whose scales are stored in the model's {@code torch_dtype} (BF16 / F16 / F32). */
  public QuantizationScheme withModelDtype(LlamaConfig config) {
    return withScaleDtype(modelDtype(config));
  }

  /** A copy declaring {@code value} as its {@code sparsity_config}. */
  public QuantizationScheme withSparsity(Sparsity value) {
    return new QuantizationScheme(
        kind, groupSize, staticInputActivations, ignore, bits, symmetric, scaleDtype, value);
  }

  /** The safetensors dtype of a config's {@code torch_dtype}. */
  public static DType modelDtype(LlamaConfig config) {
    return switch (config.torchDtype()) {
      case "bfloat16" -> DType.BF16;
      case "float16" -> DType.F16;
      default -> DType.F32;
    };
  }

  /** compressed-tensors' {@code format} (see the class comment). */
  public String format() {
    return switch (kind) {
      case INT4_GROUP -> "pack-quantized";
      case INT8_CHANNEL -> staticInputActivations ? "int-quantized" : "pack-quantized";
      case FP8_CHANNEL -> "naive-quantized";
    };
  }

  /** Whether codes are stored as {@code weight_packed} int32 words. */
  public boolean packed() {
    return format().equals("pack-quantized");
  }

  /** compressed-tensors' {@code strategy} of the weights. */
  public String strategy() {
    return kind == QuantizedWeight.Kind.INT4_GROUP ? "group" : "channel";
  }
}
