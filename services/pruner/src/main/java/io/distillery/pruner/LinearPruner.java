package io.distillery.pruner;

/**
 * Prunes one linear layer's weight ({@code [out, in]} row-major) to a pattern; returns the new
 * weight.
 */
@FunctionalInterface
public interface LinearPruner {

  float[] prune(String module, float[] weight, int rows, int cols);
}
