package io.distillery.model.quant;

import static org.assertj.core.api.Assertions.assertThat;

import io.distillery.model.safetensors.DType;
import io.distillery.model.safetensors.TensorCodec;
import io.distillery.model.safetensors.TensorData;
import io.distillery.model.safetensors.TensorSource;
import java.io.IOException;
import java.lang.foreign.ValueLayout;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.SequencedMap;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/**
 * w8-rtn's path from the stored weight to compressed-tensors' tensors without int codes, against
 * the general path (widen, {@link GroupQuantizer#int8PerChannel(float[], int, int)}, {@link
 * CompressedTensors#moduleTensors}).
 */
class Int8ChannelTensorsTest {

  private static final String MODULE = "model.layers.0.mlp.down_proj";

  private static float[] weight(int rows, int cols, long seed) {
    SplittableRandom random = new SplittableRandom(seed);
    float[] w = new float[rows * cols];
    for (int i = cols; i < w.length; i++) { // row 0 all zero
      w[i] = (float) (random.nextGaussian() * (1 + i % 3));
    }
    w[cols + 1] = 1e4f; // loud values: codes reach both ends of [-127, 127]
    w[2 * cols + 2] = -1e4f;
    return w;
  }

  private static Map<String, byte[]> bytes(SequencedMap<String, TensorSource> tensors)
      throws IOException {
    Map<String, byte[]> out = new LinkedHashMap<>();
    for (Map.Entry<String, TensorSource> e : tensors.entrySet()) {
      out.put(
          e.getKey() + " " + e.getValue().dtype() + Arrays.toString(e.getValue().shape()),
          e.getValue().bytes().toArray(ValueLayout.JAVA_BYTE));
    }
    return out;
  }

  @Test
  void shouldWriteTheTensorsOfTheGeneralPathWhenQuantizingTheStoredWeight() throws IOException {
    for (int cols : new int[] {8, 37}) { // 37: rows padded to whole int32 words
      int rows = 5;
      float[] w = weight(rows, cols, cols);
      for (DType dtype : new DType[] {DType.BF16, DType.F16, DType.F32}) {
        TensorData stored = TensorData.ofFloats(dtype, new long[] {rows, cols}, w);
        QuantizationScheme scheme =
            new QuantizationScheme(QuantizedWeight.Kind.INT8_CHANNEL, cols, false, List.of())
                .withScaleDtype(dtype);
        assertThat(scheme.packed()).isTrue();
        QuantizedWeight q =
            GroupQuantizer.int8PerChannel(
                TensorCodec.decodeFloats(stored.data(), dtype), rows, cols);
        assertThat(q.codes()).contains(-127, 127);
        Map<String, byte[]> expected =
            bytes(CompressedTensors.moduleTensors(MODULE, q, null, scheme));
        Map<String, byte[]> actual =
            bytes(CompressedTensors.int8ChannelTensors(MODULE, stored, scheme));
        assertThat(actual.keySet())
            .as(dtype + " " + cols)
            .containsExactlyElementsOf(expected.keySet());
        for (String key : expected.keySet()) {
          assertThat(actual.get(key)).as(key).isEqualTo(expected.get(key));
        }
      }
    }
  }

  @Test
  void shouldTakeTheGeneralPathWhenTheLayoutIsNotPacked() throws IOException {
    int rows = 3;
    int cols = 16;
    TensorData stored =
        TensorData.ofFloats(DType.BF16, new long[] {rows, cols}, weight(rows, cols, 1));
    QuantizationScheme w8a8 =
        new QuantizationScheme(QuantizedWeight.Kind.INT8_CHANNEL, cols, true, List.of());
    assertThat(w8a8.packed()).isFalse();
    QuantizedWeight q =
        GroupQuantizer.int8PerChannel(
            TensorCodec.decodeFloats(stored.data(), DType.BF16), rows, cols);
    assertThat(bytes(CompressedTensors.int8ChannelTensors(MODULE, stored, w8a8)))
        .containsOnlyKeys(bytes(CompressedTensors.moduleTensors(MODULE, q, null, w8a8)).keySet());
  }

  @Test
  void shouldEqualTheBytesOfThePackedWordsWhenPackingInt8CodesFromBytes() {
    SplittableRandom random = new SplittableRandom(2);
    for (int cols : new int[] {1, 4, 6, 12}) {
      int rows = 3;
      int[] codes = new int[rows * cols];
      byte[] small = new byte[codes.length];
      for (int i = 0; i < codes.length; i++) {
        codes[i] = random.nextInt(-128, 128);
        small[i] = (byte) codes[i];
      }
      assertThat(Int32Packing.packRowsInt8(small, rows, cols))
          .as(cols + " columns")
          .isEqualTo(TensorCodec.intsToBytes(Int32Packing.packRows(codes, rows, cols, 8)));
    }
  }
}
