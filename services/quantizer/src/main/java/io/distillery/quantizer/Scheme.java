package io.distillery.quantizer;

import io.distillery.model.quant.QuantizedWeight;
import java.util.Arrays;
import java.util.List;

/**
 * The quantizer's {@code scheme} param: how weights are chosen and which stored kind they end up
 * in.
 */
public enum Scheme {
  W8_RTN("w8-rtn", QuantizedWeight.Kind.INT8_CHANNEL, false),
  W4_RTN("w4-rtn", QuantizedWeight.Kind.INT4_GROUP, false),
  W4_AWQ("w4-awq", QuantizedWeight.Kind.INT4_GROUP, true),
  W4_GPTQ("w4-gptq", QuantizedWeight.Kind.INT4_GROUP, true),
  W8A8_SMOOTHQUANT("w8a8-smoothquant", QuantizedWeight.Kind.INT8_CHANNEL, true),
  FP8("fp8", QuantizedWeight.Kind.FP8_CHANNEL, false);

  private final String id;
  private final QuantizedWeight.Kind kind;
  private final boolean needsCalibration;

  Scheme(String id, QuantizedWeight.Kind kind, boolean needsCalibration) {
    this.id = id;
    this.kind = kind;
    this.needsCalibration = needsCalibration;
  }

  public String id() {
    return id;
  }

  public QuantizedWeight.Kind kind() {
    return kind;
  }

  public boolean needsCalibration() {
    return needsCalibration;
  }

  public boolean grouped() {
    return kind == QuantizedWeight.Kind.INT4_GROUP;
  }

  public static List<String> ids() {
    return Arrays.stream(values()).map(Scheme::id).toList();
  }

  /**
   * The scheme named {@code id}; IllegalArgumentException naming the param and the known schemes
   * otherwise.
   */
  public static Scheme of(String id) {
    for (Scheme s : values()) {
      if (s.id.equals(id)) {
        return s;
      }
    }
    throw new IllegalArgumentException(
        "scheme: unknown scheme '" + id + "'; known schemes: " + ids());
  }
}
