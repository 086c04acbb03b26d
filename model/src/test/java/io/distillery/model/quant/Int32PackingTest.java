package io.distillery.model.quant;

import static org.assertj.core.api.Assertions.assertThat;

import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

class Int32PackingTest {

  @Test
  void shouldPackEightInt4ValuesLowNibbleFirstWhenPackingRows() {
    // codes -8..7 shift to 0..15; first value in the lowest nibble
    int[] codes = {-8, -7, -6, -5, -4, -3, -2, -1};
    int[] packed = Int32Packing.packRows(codes, 1, 8, 4);
    assertThat(packed).containsExactly(0x76543210);
    int[] codes2 = {0, 1, 2, 3, 4, 5, 6, 7};
    assertThat(Int32Packing.packRows(codes2, 1, 8, 4)).containsExactly(0xFEDCBA98);
  }

  @Test
  void shouldRestoreCodesWhenUnpackingPackedRowsAndColumns() {
    SplittableRandom random = new SplittableRandom(7);
    int rows = 5;
    int cols = 24;
    int[] codes = new int[rows * cols];
    for (int i = 0; i < codes.length; i++) {
      codes[i] = random.nextInt(-8, 8);
    }
    int[] packed = Int32Packing.packRows(codes, rows, cols, 4);
    assertThat(packed).hasSize(rows * 3);
    assertThat(Int32Packing.unpackRows(packed, rows, cols, 4)).containsExactly(codes);
    int[] packedCols =
        Int32Packing.packColumns(codes, rows, cols, 4); // 5 rows -> 1 word per column (padded)
    assertThat(packedCols).hasSize(cols);
    assertThat(Int32Packing.unpackColumns(packedCols, rows, cols, 4)).containsExactly(codes);
  }

  @Test
  void shouldPackFourInt8ValuesPerWordLowByteFirstWhenPackingEightBits() {
    // +128 offset: -128 -> 0x00, -1 -> 0x7F, 0 -> 0x80, 127 -> 0xFF; value i at bits [8i, 8i + 8)
    int[] codes = {-128, -1, 0, 127, 1, 2, 3, 4};
    assertThat(Int32Packing.packRows(codes, 1, 8, 8)).containsExactly(0xFF807F00, 0x84838281);
    assertThat(Int32Packing.unpackRows(new int[] {0xFF807F00, 0x84838281}, 1, 8, 8))
        .containsExactly(codes);
  }

  @Test
  void shouldPackTenThreeBitValuesPerWordLeavingTheTopTwoBitsWhenPackingThreeBits() {
    // vLLM's pack_factor 32 // 3 = 10; codes -4..3 shift by 4 to 0..7
    int[] codes = {-4, -3, -2, -1, 0, 1, 2, 3, 3, 3, -4};
    int[] packed = Int32Packing.packRows(codes, 1, 11, 3);
    int expected = 0;
    int[] unsigned = {0, 1, 2, 3, 4, 5, 6, 7, 7, 7};
    for (int i = 0; i < 10; i++) {
      expected |= unsigned[i] << (3 * i);
    }
    assertThat(packed).containsExactly(expected, 0);
    assertThat(expected >>> 30).isZero();
    assertThat(Int32Packing.unpackRows(packed, 1, 11, 3)).containsExactly(codes);
  }

  @Test
  void shouldRoundTripEveryPackedWidthWhenPackingTwoThreeFourAndEightBits() {
    SplittableRandom random = new SplittableRandom(11);
    for (int bits : new int[] {2, 3, 4, 8}) {
      int rows = 3;
      int cols = 40;
      int[] codes = new int[rows * cols];
      for (int i = 0; i < codes.length; i++) {
        codes[i] = random.nextInt(-(1 << (bits - 1)), 1 << (bits - 1));
      }
      int perWord = 32 / bits;
      int[] packed = Int32Packing.packRows(codes, rows, cols, bits);
      assertThat(packed).as(bits + " bits").hasSize(rows * ((cols + perWord - 1) / perWord));
      assertThat(Int32Packing.unpackRows(packed, rows, cols, bits))
          .as(bits + " bits")
          .containsExactly(codes);
      int[] packedCols = Int32Packing.packColumns(codes, rows, cols, bits);
      assertThat(Int32Packing.unpackColumns(packedCols, rows, cols, bits))
          .as(bits + " bits")
          .containsExactly(codes);
    }
  }

  @Test
  void shouldMatchTheElementwiseDefinitionWhenPackingRowsOfAnyWidthAndLength() {
    SplittableRandom random = new SplittableRandom(13);
    for (int bits = 1; bits <= 8; bits++) {
      for (int cols : new int[] {1, 3, 4, 5, 8, 31, 32, 33, 130}) {
        int rows = 3;
        int[] codes = new int[rows * cols];
        for (int i = 0; i < codes.length; i++) {
          codes[i] = random.nextInt(-(1 << (bits - 1)), 1 << (bits - 1));
        }
        // the definition, value by value: packed[c / perWord] |= u << (bits * (c % perWord))
        int perWord = 32 / bits;
        int words = (cols + perWord - 1) / perWord;
        int[] expected = new int[rows * words];
        for (int r = 0; r < rows; r++) {
          for (int c = 0; c < cols; c++) {
            int u = (codes[r * cols + c] + (1 << (bits - 1))) & ((1 << bits) - 1);
            expected[r * words + c / perWord] |= u << (bits * (c % perWord));
          }
        }
        assertThat(Int32Packing.packRows(codes, rows, cols, bits))
            .as(bits + " bits, " + cols + " columns")
            .containsExactly(expected);
      }
    }
  }
}
