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
    int[] packedCols = Int32Packing.packColumns(codes, rows, cols, 4); // 5 rows -> 1 word per column (padded)
    assertThat(packedCols).hasSize(cols);
    assertThat(Int32Packing.unpackColumns(packedCols, rows, cols, 4)).containsExactly(codes);
  }
}
