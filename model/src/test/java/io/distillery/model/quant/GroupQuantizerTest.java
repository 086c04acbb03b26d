package io.distillery.model.quant;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.assertj.core.api.Assertions.within;

import io.distillery.model.safetensors.DType;
import io.distillery.model.safetensors.TensorCodec;
import io.distillery.model.safetensors.TensorData;
import java.util.Arrays;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

class GroupQuantizerTest {

  @Test
  void shouldComputeScaleAndZeroPointPerGroupWhenQuantizingInt4() {
    // one row, two groups of 4: [0, 1.4, 3, 0.75] -> range [0, 3], scale 0.2, zero round(0) - 8 =
    // -8
    //                            [-1, 1, 2, 0] -> range [-1, 2], scale 0.2, zero round(5) - 8 = -3
    float[] w = {0f, 1.4f, 3f, 0.75f, -1f, 1f, 2f, 0f};
    QuantizedWeight q = GroupQuantizer.int4Group(w, 1, 8, 4);
    assertThat(q.scales()[0]).isCloseTo(0.2f, within(1e-6f));
    assertThat(q.zeroPoints()[0]).isEqualTo(-8);
    assertThat(q.scales()[1]).isCloseTo(0.2f, within(1e-6f));
    assertThat(q.zeroPoints()[1]).isEqualTo(-3);
    // 1.4 / 0.2 = 7 -> code -1; 3 / 0.2 = 15 -> code 7; 0.75 / 0.2 = 3.75 -> 4 -> -4; 1 / 0.2 +
    // (-3) = 2
    assertThat(q.codes()).containsExactly(-8, -1, 7, -4, -8, 2, 7, -3);
    float[] back = q.dequantize();
    for (int i = 0; i < w.length; i++) {
      assertThat(back[i]).isCloseTo(w[i], within(0.1f + 1e-6f)); // at most half a step
    }
    assertThat(back[2]).isCloseTo(3f, within(1e-5f));
    assertThat(back[4]).isCloseTo(-1f, within(1e-5f));
  }

  @Test
  void shouldUseCompressedTensorsSymmetricScaleWithoutZeroPointsWhenSymmetric() {
    // calculate_qparams, symmetric: scale = max|w| / ((7 - (-8)) / 2) = 1.5 / 7.5 = 0.2; zero point
    // 0
    float[] w = {1.5f, -1.5f, 0.3f, -0.1f};
    QuantizedWeight q = GroupQuantizer.int4Group(w, 1, 4, 4, true);
    assertThat(q.scales()[0]).isCloseTo(0.2f, within(1e-6f));
    assertThat(q.zeroPoints()).isNull();
    // 1.5 / 0.2 = 7.5 -> rint 8 -> clamped 7; -7.5 -> -8 (half to even); 0.3 / 0.2 = 1.5 -> 2; -0.5
    // -> -0
    assertThat(q.codes()).containsExactly(7, -8, 2, 0);
  }

  @Test
  void shouldScaleInt8ByRowAbsMaxWhenQuantizingPerChannel() {
    float[] w = {1.27f, -0.5f, 0f, 2.54f, 1f, -2.54f};
    QuantizedWeight q = GroupQuantizer.int8PerChannel(w, 2, 3);
    assertThat(q.scales()[0]).isCloseTo(0.01f, within(1e-7f));
    assertThat(q.scales()[1]).isCloseTo(0.02f, within(1e-7f));
    assertThat(q.codes()).containsExactly(127, -50, 0, 127, 50, -127);
    assertThat(q.zeroPoints()).isNull();
  }

  @Test
  void shouldKeepCodesInRangeAndLowerTheErrorWhenBitsGrow() {
    int rows = 8;
    int cols = 64;
    SplittableRandom random = new SplittableRandom(4);
    float[] w = new float[rows * cols];
    for (int i = 0; i < w.length; i++) {
      w[i] = (float) (random.nextGaussian() * 0.05 + (i % 9 == 0 ? 0.02 : 0));
    }
    double previous = Double.POSITIVE_INFINITY;
    for (int bits : new int[] {2, 3, 4, 8}) {
      QuantizedWeight q = GroupQuantizer.intGroup(w, rows, cols, 16, bits);
      assertThat(q.bits()).isEqualTo(bits);
      int lo = -(1 << (bits - 1));
      int hi = (1 << (bits - 1)) - 1;
      assertThat(java.util.Arrays.stream(q.codes()).boxed().toList())
          .allSatisfy(c -> assertThat(c).isBetween(lo, hi));
      assertThat(java.util.Arrays.stream(q.zeroPoints()).boxed().toList())
          .allSatisfy(z -> assertThat(z).isBetween(lo, hi));
      assertThat(java.util.Arrays.stream(q.codes()).min().getAsInt())
          .isEqualTo(lo); // the grid spans the range
      float[] back = q.dequantize();
      double error = 0;
      for (int i = 0; i < w.length; i++) {
        error += (w[i] - back[i]) * (w[i] - back[i]);
      }
      assertThat(error).as("error at %d bits", bits).isLessThan(previous / 2);
      assertThat(GroupQuantizer.fakeQuantize(w, rows, cols, 16, bits)).containsExactly(back);
      previous = error;
    }
    assertThat(GroupQuantizer.intGroup(w, rows, cols, 16, 4).codes())
        .containsExactly(GroupQuantizer.int4Group(w, rows, cols, 16).codes());
  }

  @Test
  void shouldPutThreeBitCodesOnAnEightStepGrid() {
    // [0, 0.7]: scale 0.1, zero round(0) - 4 = -4; 0.35 / 0.1 = 3.5 -> 4 (half to even) -> code 0
    QuantizedWeight q = GroupQuantizer.intGroup(new float[] {0f, 0.7f, 0.35f, 0.1f}, 1, 4, 4, 3);
    assertThat(q.scales()[0]).isCloseTo(0.1f, within(1e-6f));
    assertThat(q.zeroPoints()).containsExactly(-4);
    assertThat(q.codes()).containsExactly(-4, 3, 0, -3);
  }

  @Test
  void shouldRejectAWidthOtherThanTwoThreeFourOrEightBits() {
    assertThatThrownBy(() -> GroupQuantizer.intGroup(new float[8], 1, 8, 4, 5))
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessageContaining("bits: must be 2, 3, 4 or 8, got 5");
    assertThatThrownBy(
            () ->
                new QuantizedWeight(
                    QuantizedWeight.Kind.INT8_CHANNEL, 1, 2, 2, new int[2], new float[1], null, 4))
        .hasMessageContaining("cannot hold 4-bit codes");
  }

  @Test
  void shouldRejectGroupSizeWhenItDoesNotDivideWidth() {
    assertThatThrownBy(() -> GroupQuantizer.int4Group(new float[12], 1, 12, 8))
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessageContaining("groupSize 8");
  }

  @Test
  void shouldRoundTripRepresentableValuesWhenEncodingFp8() {
    assertThat(Fp8E4M3.decode(0x7E)).isEqualTo(448f);
    assertThat(Fp8E4M3.decode(0x38)).isEqualTo(1f);
    assertThat(Fp8E4M3.decode(0x01)).isEqualTo(0x1p-9f); // smallest subnormal
    assertThat(Fp8E4M3.encode(1f)).isEqualTo(0x38);
    assertThat(Fp8E4M3.encode(-2f)).isEqualTo(0xC0);
    assertThat(Fp8E4M3.encode(1000f)).isEqualTo(0x7E); // saturates
    assertThat(Fp8E4M3.decode(Fp8E4M3.encode(1.0625f)))
        .isEqualTo(1f); // tie between 1 and 1.125 -> even code
    for (int code = 0; code < 256; code++) {
      if ((code & 0x7F) != 0x7F) {
        float v = Fp8E4M3.decode(code);
        assertThat(Fp8E4M3.decode(Fp8E4M3.encode(v))).isEqualTo(v);
      }
    }
  }

  @Test
  void shouldKeepRelativeErrorBelowOneSixteenthWhenQuantizingFp8PerChannel() {
    float[] w = {0.3f, -0.01f, 0.2f, 1e-3f, 5f, -4f};
    float[] back = GroupQuantizer.fp8PerChannel(w, 2, 3).dequantize();
    assertThat(back[0]).isEqualTo(0.3f); // the row max maps to 448 exactly
    for (int i = 0; i < w.length; i++) {
      assertThat(Math.abs(back[i] - w[i])).isLessThanOrEqualTo(Math.abs(w[i]) / 16 + 1e-6f);
    }
  }

  @Test
  void shouldGiveTheSameCodesAndScalesWhenQuantizingTheStoredWeightRowByRow() {
    SplittableRandom random = new SplittableRandom(21);
    int rows = 7;
    int cols = 40;
    float[] w = new float[rows * cols];
    for (int i = 0; i < w.length; i++) {
      w[i] = i < cols ? 0f : (float) random.nextGaussian() * (1 + i % 5); // an all-zero row
    }
    for (DType dtype : new DType[] {DType.F32, DType.F16, DType.BF16}) {
      TensorData stored = TensorData.ofFloats(dtype, new long[] {rows, cols}, w);
      float[] widened = TensorCodec.decodeFloats(stored.data(), dtype);
      QuantizedWeight expected = GroupQuantizer.int8PerChannel(widened, rows, cols);
      QuantizedWeight actual = GroupQuantizer.int8PerChannel(stored);
      assertThat(actual.codes()).as(dtype.name()).containsExactly(expected.codes());
      assertThat(actual.scales()).as(dtype.name()).containsExactly(expected.scales());
      assertThat(actual.kind()).isEqualTo(QuantizedWeight.Kind.INT8_CHANNEL);
    }
  }

  @Test
  void shouldRoundTiesToEvenAndMatchGridQuantizeWhenQuantizingInt8CodesIntoBytes() {
    int cols = 16;
    // row 0: max 127 makes the scale exactly 1, so k + 0.5 are exact ties; row 1: specials
    float[] w = {
      127f,
      0.5f,
      1.5f,
      2.5f,
      -0.5f,
      -1.5f,
      -2.5f,
      126.5f,
      -126.5f,
      3.4999998f,
      -0f,
      0f,
      1e-45f,
      -127f,
      64.5f,
      65.5f,
      Float.MIN_NORMAL,
      1e-40f,
      -3e-39f,
      1e-44f,
      0f,
      0f,
      0f,
      0f,
      0f,
      0f,
      0f,
      0f,
      0f,
      0f,
      0f,
      2e-40f
    };
    int rows = w.length / cols;
    for (DType dtype : new DType[] {DType.F32, DType.BF16}) {
      TensorData stored = TensorData.ofFloats(dtype, new long[] {rows, cols}, w);
      QuantizedWeight expected =
          GroupQuantizer.int8PerChannel(TensorCodec.decodeFloats(stored.data(), dtype), rows, cols);
      GroupQuantizer.Int8Channel actual = GroupQuantizer.int8PerChannelBytes(stored);
      int[] codes = new int[actual.codes().length];
      for (int i = 0; i < codes.length; i++) {
        codes[i] = actual.codes()[i];
      }
      assertThat(codes).as(dtype.name()).containsExactly(expected.codes());
      assertThat(actual.scales()).as(dtype.name()).containsExactly(expected.scales());
    }
    int[] firstRow =
        GroupQuantizer.int8PerChannel(TensorData.ofFloats(new long[] {rows, cols}, w)).codes();
    assertThat(Arrays.copyOf(firstRow, 9)).containsExactly(127, 0, 2, 2, 0, -2, -2, 126, -126);
  }
}
