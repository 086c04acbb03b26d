package io.distillery.bench;

import java.util.Arrays;

/** Nearest-rank percentiles of a sample. */
record Percentiles(double p50, double p99, double max, int n) {

  static Percentiles of(long[] values) {
    if (values.length == 0) {
      return new Percentiles(Double.NaN, Double.NaN, Double.NaN, 0);
    }
    long[] v = values.clone();
    Arrays.sort(v);
    return new Percentiles(rank(v, 0.50), rank(v, 0.99), v[v.length - 1], v.length);
  }

  private static double rank(long[] sorted, double q) {
    int i = (int) Math.ceil(q * sorted.length) - 1;
    return sorted[Math.max(0, Math.min(sorted.length - 1, i))];
  }
}
