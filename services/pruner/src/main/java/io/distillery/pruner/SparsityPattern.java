package io.distillery.pruner;

/**
 * Which weights of a {@code [out, in]} matrix may be zeroed: a fraction of each output row
 * (unstructured), or N of every M consecutive inputs (N:M; 2:4 is what sparse tensor cores
 * accelerate).
 */
public sealed interface SparsityPattern {

  static SparsityPattern unstructured(double sparsity) {
    return new Unstructured(sparsity);
  }

  static SparsityPattern nOfM(int n, int m) {
    return new NOfM(n, m);
  }

  /** Prune {@code round(sparsity * in)} weights of every output row. */
  record Unstructured(double sparsity) implements SparsityPattern {
    public Unstructured {
      if (!(sparsity > 0 && sparsity < 1)) {
        throw new IllegalArgumentException("sparsity must be in (0,1), got " + sparsity);
      }
    }

    /** Weights pruned out of {@code count}. */
    public int pruned(int count) {
      return (int) Math.round(sparsity * count);
    }
  }

  /**
   * Prune {@code n} of every {@code m} consecutive inputs; the input width must be a multiple of
   * {@code m}.
   */
  record NOfM(int n, int m) implements SparsityPattern {
    public NOfM {
      if (m <= 0 || n <= 0 || n >= m) {
        throw new IllegalArgumentException("N:M needs 0 < N < M, got " + n + ":" + m);
      }
    }

    public void checkWidth(String module, int in) {
      if (in % m != 0) {
        throw new IllegalArgumentException(
            module
                + ": input width "
                + in
                + " is not a multiple of "
                + m
                + " for "
                + n
                + ":"
                + m
                + " sparsity");
      }
    }
  }
}
