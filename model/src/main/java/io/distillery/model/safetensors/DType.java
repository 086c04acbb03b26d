package io.distillery.model.safetensors;

import java.util.Arrays;
import java.util.List;

/** Element types this platform reads and writes, spelled as in the safetensors header. */
public enum DType {
  F32(4),
  F16(2),
  BF16(2),
  I8(1),
  U8(1),
  I32(4),
  I64(8),
  /**
   * OCP FP8 E4M3 ("e4m3fn": no infinities, max 448), as compressed-tensors' float-quantized weights
   * use it.
   */
  F8_E4M3(1);

  private static final List<String> NAMES = Arrays.stream(values()).map(Enum::name).toList();

  private final int byteSize;

  DType(int byteSize) {
    this.byteSize = byteSize;
  }

  /** Bytes per element. */
  public int byteSize() {
    return byteSize;
  }

  /**
   * Whether the type holds floating-point values that load into a model as they are (F32, F16,
   * BF16). F8_E4M3 is not one of them: its values only mean something times a scale stored beside
   * them (compressed-tensors' {@code weight_scale}), so it is read through the quantization code,
   * never widened into a float weight.
   */
  public boolean isFloatingPoint() {
    return this == F32 || this == F16 || this == BF16;
  }

  /** The type named {@code name} in a header, or {@code null} when the name is not one of ours. */
  public static DType fromHeaderName(String name) {
    for (DType type : values()) {
      if (type.name().equals(name)) {
        return type;
      }
    }
    return null;
  }

  /** The Hugging Face {@code torch_dtype} spelling: {@code float32}, {@code bfloat16}, ... */
  public String torchName() {
    return switch (this) {
      case F32 -> "float32";
      case F16 -> "float16";
      case BF16 -> "bfloat16";
      case I8 -> "int8";
      case U8 -> "uint8";
      case I32 -> "int32";
      case I64 -> "int64";
      case F8_E4M3 -> "float8_e4m3fn";
    };
  }

  /** The header names of every supported type, for error messages. */
  public static List<String> headerNames() {
    return NAMES;
  }
}
