package io.distillery.model.llama;

/**
 * Index gathers on row-major weight matrices, shared by everything that cuts a model down to kept
 * heads, kv groups, hidden dimensions, MLP channels or layers (structured pruning, student
 * initialisation for distillation).
 */
public final class WeightSlices {

  private WeightSlices() {}

  /** {@code 0, 1, ..., n-1}. */
  public static int[] first(int n) {
    int[] out = new int[n];
    for (int i = 0; i < n; i++) {
      out[i] = i;
    }
    return out;
  }

  /** Unit indices to row indices: unit u covers rows [u * width, (u + 1) * width). */
  public static int[] expand(int[] units, int width) {
    int[] out = new int[units.length * width];
    for (int i = 0; i < units.length; i++) {
      for (int d = 0; d < width; d++) {
        out[i * width + d] = units[i] * width + d;
      }
    }
    return out;
  }

  /** {@code v[keep]} of a vector. */
  public static float[] pick(float[] v, int[] keep) {
    float[] out = new float[keep.length];
    for (int i = 0; i < keep.length; i++) {
      out[i] = v[keep[i]];
    }
    return out;
  }

  /** Kept rows of a row-major matrix with {@code cols} columns. */
  public static float[] rows(float[] w, int cols, int[] keep) {
    float[] out = new float[keep.length * cols];
    for (int i = 0; i < keep.length; i++) {
      System.arraycopy(w, keep[i] * cols, out, i * cols, cols);
    }
    return out;
  }

  /** Kept columns of a row-major {@code rows x cols} matrix. */
  public static float[] columns(float[] w, int rows, int cols, int[] keep) {
    return slice(w, rows, cols, first(rows), keep);
  }

  /** Sub-matrix {@code w[rows][cols]} of a row-major {@code r x c} matrix. */
  public static float[] slice(float[] w, int r, int c, int[] rows, int[] cols) {
    float[] out = new float[rows.length * cols.length];
    for (int i = 0; i < rows.length; i++) {
      for (int j = 0; j < cols.length; j++) {
        out[i * cols.length + j] = w[rows[i] * c + cols[j]];
      }
    }
    return out;
  }
}
