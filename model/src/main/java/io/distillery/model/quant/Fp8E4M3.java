package io.distillery.model.quant;

import io.distillery.model.safetensors.TensorCodec;

/**
 * The OCP FP8 E4M3 ("e4m3fn", torch.float8_e4m3fn) element type: 1 sign, 4 exponent (bias 7), 3
 * mantissa bits, no infinities, NaN = S.1111.111, largest finite 448. Encoding rounds to the
 * nearest representable value (ties to the even code) and saturates at +-448, as casts in
 * quantizers do after scaling.
 */
public final class Fp8E4M3 {

  /** Largest finite magnitude. */
  public static final float MAX = 448f;

  private Fp8E4M3() {}

  /** The value of an E4M3 code (0..255). */
  public static float decode(int code) {
    return TensorCodec.f8E4M3ToFloat((byte) code);
  }

  /** The nearest E4M3 code of {@code value}; saturates beyond +-448; NaN encodes as 0x7F. */
  public static int encode(float value) {
    if (Float.isNaN(value)) {
      return 0x7F;
    }
    int sign = value < 0 || (value == 0 && 1 / value < 0) ? 0x80 : 0;
    float magnitude = Math.min(Math.abs(value), MAX);
    // positive codes 0x00..0x7E are increasing in value: binary search for the nearest
    int lo = 0;
    int hi = 0x7E;
    while (hi - lo > 1) {
      int mid = (lo + hi) >>> 1;
      if (decode(mid) <= magnitude) {
        lo = mid;
      } else {
        hi = mid;
      }
    }
    float dLo = magnitude - decode(lo);
    float dHi = decode(hi) - magnitude;
    int code = dLo < dHi ? lo : dHi < dLo ? hi : ((lo & 1) == 0 ? lo : hi);
    return sign | code;
  }
}
