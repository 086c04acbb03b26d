package io.distillery.model.quant;

/**
 * compressed-tensors' {@code pack_to_int32} / {@code unpack_from_int32} for codes of 1 to 8 bits
 * (read from compressed_tensors/compressors/quantized_compressors/pack_quantized.py, 0.12.2 ..
 * 0.16.0): a signed code is shifted to unsigned by {@code 1 << (bits - 1)}, and {@code 32 / bits}
 * consecutive values along the packed dimension share one int32, the first in the lowest bits
 * ({@code packed |= u[i] << (bits * i)}). A trailing partial word is zero-padded. This is the
 * layout vLLM's loader unpacks: {@code schemes/compressed_tensors_wNa16.py} registers {@code
 * weight_packed} with {@code pack_factor = 32 // num_bits} values per word. For 2, 4 and 8 bits it
 * is bit for bit the dense layout compressed-tensors 0.17 switched to (PR #715); for 3 bits it is
 * the legacy one (10 values per word, the top 2 bits unused), not 0.17's cross-word packing (32
 * values in 3 words).
 */
public final class Int32Packing {

  private Int32Packing() {}

  private static void checkBits(int bits) {
    if (bits < 1 || bits > 8) {
      throw new IllegalArgumentException("packed codes have 1 to 8 bits, not " + bits);
    }
  }

  /**
   * Packs a {@code [rows, cols]} matrix of signed codes along dim 1 → {@code [rows, ceil(cols /
   * (32/bits))]}.
   */
  public static int[] packRows(int[] codes, int rows, int cols, int bits) {
    checkBits(bits);
    int perWord = 32 / bits;
    int words = (cols + perWord - 1) / perWord;
    int offset = 1 << (bits - 1);
    int mask = (1 << bits) - 1;
    int[] out = new int[rows * words];
    int full = cols / perWord;
    for (int r = 0; r < rows; r++) {
      int row = r * cols;
      int o = r * words;
      if (bits == 8) { // w8: four codes a word, unrolled
        for (int w = 0; w < full; w++) {
          int at = row + 4 * w;
          out[o + w] =
              ((codes[at] + offset) & mask)
                  | ((codes[at + 1] + offset) & mask) << 8
                  | ((codes[at + 2] + offset) & mask) << 16
                  | ((codes[at + 3] + offset) & mask) << 24;
        }
      } else {
        for (int w = 0; w < full; w++) {
          int at = row + perWord * w;
          int word = 0;
          for (int k = 0; k < perWord; k++) {
            word |= ((codes[at + k] + offset) & mask) << (bits * k);
          }
          out[o + w] = word;
        }
      }
      int word = 0; // a trailing partial word, zero-padded
      for (int c = full * perWord; c < cols; c++) {
        word |= ((codes[row + c] + offset) & mask) << (bits * (c - full * perWord));
      }
      if (full < words) {
        out[o + full] = word;
      }
    }
    return out;
  }

  /**
   * The bytes of {@link #packRows}{@code (codes, rows, cols, 8)} as little-endian int32 words, from
   * codes held one byte each: at 8 bits word w of a row holds codes 4w..4w+3, lowest first, so its
   * bytes are those codes shifted by 128 ({@code code ^ 0x80}), rows zero-padded to whole words.
   */
  public static byte[] packRowsInt8(byte[] codes, int rows, int cols) {
    if ((long) rows * cols != codes.length) {
      throw new IllegalArgumentException(
          codes.length + " codes are not a [" + rows + ", " + cols + "] matrix");
    }
    int rowBytes = 4 * ((cols + 3) / 4);
    byte[] out = new byte[Math.multiplyExact(rows, rowBytes)];
    for (int r = 0; r < rows; r++) {
      int from = r * cols;
      int to = r * rowBytes;
      for (int c = 0; c < cols; c++) {
        out[to + c] = (byte) (codes[from + c] ^ 0x80);
      }
    }
    return out;
  }

  /** The inverse of {@link #packRows}: signed codes {@code [rows, cols]}. */
  public static int[] unpackRows(int[] packed, int rows, int cols, int bits) {
    checkBits(bits);
    int perWord = 32 / bits;
    int words = (cols + perWord - 1) / perWord;
    if (packed.length != rows * words) {
      throw new IllegalArgumentException(
          "packed tensor has " + packed.length + " words, expected " + rows + "x" + words);
    }
    int offset = 1 << (bits - 1);
    int mask = (1 << bits) - 1;
    int[] out = new int[rows * cols];
    for (int r = 0; r < rows; r++) {
      for (int c = 0; c < cols; c++) {
        out[r * cols + c] =
            ((packed[r * words + c / perWord] >>> (bits * (c % perWord))) & mask) - offset;
      }
    }
    return out;
  }

  /**
   * Packs along dim 0 (compressed-tensors packs asymmetric zero points so): {@code
   * [ceil(rows/(32/bits)), cols]}.
   */
  public static int[] packColumns(int[] codes, int rows, int cols, int bits) {
    int[] packedT = packRows(transpose(codes, rows, cols), cols, rows, bits);
    int words = packedT.length / cols;
    return transpose(packedT, cols, words);
  }

  /** The inverse of {@link #packColumns}. */
  public static int[] unpackColumns(int[] packed, int rows, int cols, int bits) {
    int words = packed.length / cols;
    return transpose(unpackRows(transpose(packed, words, cols), cols, rows, bits), cols, rows);
  }

  private static int[] transpose(int[] m, int rows, int cols) {
    int[] t = new int[m.length];
    for (int r = 0; r < rows; r++) {
      for (int c = 0; c < cols; c++) {
        t[c * rows + r] = m[r * cols + c];
      }
    }
    return t;
  }
}
