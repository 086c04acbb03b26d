package io.distillery.model.stream;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import java.util.Random;
import java.util.Set;
import org.junit.jupiter.api.Test;

class HessianAccumulatorTest {

  private static final int WIDTH = 12;

  @Test
  void shouldMatchTwiceXtXOverTokensWhenProductsGoInChunksSmallerThanTheInput() {
    // 3 batches of [2, 5, 12]: chunks of 40 doubles are 3 rows and 3 columns, so every batch takes
    // 4 row chunks (the last one short) and 4 column chunks
    assertHessians(40);
  }

  @Test
  void shouldMatchTwiceXtXOverTokensWhenOneChunkHoldsTheWholeBatch() {
    assertHessians(HessianAccumulator.CHUNK_DOUBLES);
  }

  @Test
  void shouldRefuseChunksOfNothing() {
    try (NDManager manager = Engine.getEngine("PyTorch").newBaseManager()) {
      assertThrows(
          IllegalArgumentException.class, () -> new HessianAccumulator(manager, Set.of("q"), 0));
    }
  }

  private static void assertHessians(long chunkDoubles) {
    Random random = new Random(5);
    double[] reference = new double[WIDTH * WIDTH];
    long tokens = 0;
    try (NDManager manager = Engine.getEngine("PyTorch").newBaseManager();
        HessianAccumulator hessians =
            new HessianAccumulator(manager, Set.of("q", "k"), chunkDoubles)) {
      for (int b = 0; b < 3; b++) {
        float[] x = new float[2 * 5 * WIDTH];
        for (int i = 0; i < x.length; i++) {
          x[i] = (float) random.nextGaussian();
        }
        for (int r = 0; r < 10; r++) {
          for (int i = 0; i < WIDTH; i++) {
            for (int j = 0; j < WIDTH; j++) {
              reference[i * WIDTH + j] += (double) x[r * WIDTH + i] * x[r * WIDTH + j];
            }
          }
        }
        tokens += 10;
        NDArray input = manager.create(x, new Shape(2, 5, WIDTH));
        hessians.add("q", input);
        hessians.add("k", input); // the same tensor: shares q's accumulation
        hessians.add("unobserved", input);
        hessians.endOfBatch();
        input.close();
      }
      assertEquals(10 * 3, hessians.tokens("k"));
      assertEquals(2.0 * 30 * WIDTH * WIDTH, hessians.flops(), 1e-9);
      for (String module : new String[] {"q", "k"}) {
        float[] h = hessians.take(module);
        for (int i = 0; i < h.length; i++) {
          double expected = 2.0 * reference[i] / tokens;
          assertEquals(expected, h[i], 1e-6 * Math.max(1, Math.abs(expected)), module + " " + i);
        }
      }
      assertThrows(IllegalStateException.class, () -> hessians.take("q"));
    }
  }
}
