package io.distillery.model.safetensors;

import static org.assertj.core.api.Assertions.assertThat;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/**
 * TensorCodec's bulk conversions against their element-by-element definitions, over every 16-bit
 * pattern and across chunk boundaries.
 */
class TensorCodecBulkTest {

  private static final ValueLayout.OfShort I16 =
      ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

  /** Every 16-bit pattern once, then again: more than one widening chunk. */
  private static MemorySegment allHalves() {
    MemorySegment bytes = MemorySegment.ofArray(new byte[2 * 2 * 65536]);
    for (int i = 0; i < 2 * 65536; i++) {
      bytes.set(I16, 2L * i, (short) i);
    }
    return bytes;
  }

  @Test
  void shouldWidenEveryBf16AndF16PatternAsTheScalarConversionsWhenDecoding() {
    MemorySegment bytes = allHalves();
    float[] bf16 = TensorCodec.decodeFloats(bytes, DType.BF16);
    float[] f16 = TensorCodec.decodeFloats(bytes, DType.F16);
    float[] into = new float[bf16.length + 3];
    TensorCodec.decodeFloats(bytes, DType.BF16, into);
    for (int i = 0; i < bf16.length; i++) {
      short bits = (short) i;
      assertThat(Float.floatToRawIntBits(bf16[i]))
          .as("bf16 %04x", i & 0xffff)
          .isEqualTo(Float.floatToRawIntBits(TensorCodec.bf16ToFloat(bits)));
      assertThat(Float.floatToRawIntBits(f16[i]))
          .as("f16 %04x", i & 0xffff)
          .isEqualTo(Float.floatToRawIntBits(Float.float16ToFloat(bits)));
      assertThat(Float.floatToRawIntBits(into[i])).isEqualTo(Float.floatToRawIntBits(bf16[i]));
    }
  }

  @Test
  void shouldNarrowAsTheScalarConversionsWhenEncodingHalves() {
    SplittableRandom random = new SplittableRandom(3);
    float[] values = new float[40_000];
    for (int i = 0; i < values.length; i++) {
      values[i] =
          switch (i % 7) {
            case 0 -> Float.intBitsToFloat(random.nextInt()); // NaNs, infinities, subnormals
            case 1 -> Float.intBitsToFloat(0x3f808000 + (i & 0x10000)); // ties to even
            default -> (float) random.nextGaussian();
          };
    }
    MemorySegment bf16 = TensorCodec.encodeFloats(values, DType.BF16);
    MemorySegment f16 = TensorCodec.encodeFloats(values, DType.F16);
    for (int i = 0; i < values.length; i++) {
      assertThat(bf16.get(I16, 2L * i)).isEqualTo(TensorCodec.floatToBf16(values[i]));
      assertThat(f16.get(I16, 2L * i)).isEqualTo(Float.floatToFloat16(values[i]));
    }
  }

  @Test
  void shouldRoundTripLittleEndianIntsAndLongsWhenConvertingBytes() {
    int[] ints = {0, 1, -1, 0x01020304, Integer.MIN_VALUE};
    byte[] b = TensorCodec.intsToBytes(ints);
    assertThat(b).hasSize(20);
    assertThat(new byte[] {b[12], b[13], b[14], b[15]}).containsExactly(4, 3, 2, 1);
    assertThat(TensorCodec.bytesToInts(b)).containsExactly(ints);
    long[] longs = {0, -2, 0x0102030405060708L};
    byte[] l = TensorCodec.longsToBytes(longs);
    assertThat(l[16]).isEqualTo((byte) 8);
    assertThat(TensorCodec.bytesToLongs(l)).containsExactly(longs);
    assertThat(TensorData.ofInts(new long[] {5}, ints).data().toArray(ValueLayout.JAVA_BYTE))
        .isEqualTo(b);
  }
}
