package io.distillery.model.calib;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.nio.file.Path;
import java.util.Map;
import java.util.Set;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class CalibrationStatsTest {

  @TempDir Path dir;

  @Test
  void shouldAccumulateHandCheckableStatisticsAndRoundTrip() throws Exception {
    StatsAccumulator acc = new StatsAccumulator(4, 1.0f, Set.of("l"), false);
    // two batches of rows over 2 channels: x = [1, -2], [3, 0] then [-1, 2]
    acc.add("l", new float[] {1, -2, 3, 0}, 2);
    acc.add("l", new float[] {-1, 2}, 2);
    acc.add("other", new float[] {0.5f, 0.5f, 0.5f}, 3);
    CalibrationStats stats = acc.result(Map.of("samples", "3"));
    LayerStats l = stats.layer("l");
    assertThat(l.tokens()).isEqualTo(3);
    assertThat(l.absMax()).containsExactly(3f, 2f);
    assertThat(l.meanAbs()).containsExactly(5f / 3, 4f / 3);
    assertThat(l.l2Norm()[0]).isEqualTo((float) Math.sqrt(11));
    // X^T X = [[1+9+1, -2+0-2], [-4, 4+0+4]]
    assertThat(l.gram()).containsExactly(11, -4, -4, 8);
    assertThat(l.hessian()).containsExactly(22.0 / 3, -8.0 / 3, -8.0 / 3, 16.0 / 3);
    assertThat(stats.layer("other").gram()).isNull();
    // histogram over [0, 3] in 4 bins, 6 values: |x| = 1,2,3,0,1,2
    assertThat(l.histogram()).containsExactly(1, 2, 2, 1);

    Path f = dir.resolve(CalibrationStats.FILE_NAME);
    stats.write(f);
    CalibrationStats back = CalibrationStats.read(f);
    assertThat(back.metadata()).containsEntry("samples", "3");
    assertThat(back.layers().keySet()).containsExactlyInAnyOrder("l", "other");
    LayerStats b = back.layer("l");
    assertThat(b.gram()).containsExactly(l.gram());
    assertThat(b.histogram()).containsExactly(l.histogram());
    assertThat(b.sumSq()).containsExactly(l.sumSq());
    assertThat(b.histMax()).isEqualTo(l.histMax());
    assertThatThrownBy(() -> back.layer("nope")).hasMessageContaining("calibrated layers");
    CalibrationStats vectors = CalibrationStats.readArtefact(dir, false);
    assertThat(vectors.layer("l").gram()).isNull();
    assertThat(vectors.layer("l").sumSq()).containsExactly(l.sumSq());
  }

  @Test
  void shouldAccumulateTheGramMatrixNativelyWhenTheBatchIsLarge() {
    int n = 96;
    int rows = StatsAccumulator.GRAM_CHUNK + 500; // two native chunks
    assertThat((long) rows * n * n).isGreaterThanOrEqualTo(StatsAccumulator.GRAM_NATIVE_MIN_MACS);
    float[] x = new float[rows * n];
    java.util.SplittableRandom random = new java.util.SplittableRandom(9);
    for (int i = 0; i < x.length; i++) {
      x[i] =
          random.nextInt(-3, 4); // small integers: every float32 product and partial sum is exact
    }
    StatsAccumulator acc = new StatsAccumulator(8, 1.0f, Set.of("l"), false);
    acc.add("l", x, n);
    acc.add(
        "l",
        java.util.Arrays.copyOf(x, 2 * n),
        n); // a small batch on the Java path, into the same sum
    double[] gram = acc.result(Map.of()).layer("l").gram();
    for (int i = 0; i < n; i++) {
      for (int j = 0; j < n; j++) {
        double expected = 0;
        for (int r = 0; r < rows; r++) {
          expected += (double) x[r * n + i] * x[r * n + j] * (r < 2 ? 2 : 1);
        }
        assertThat(gram[i * n + j]).as("gram[%d][%d]", i, j).isEqualTo(expected);
      }
    }
  }

  @Test
  void shouldReportSharedInputsUnderEveryModuleNameWhenModulesShareOneInput() {
    StatsAccumulator acc = new StatsAccumulator(4, 1.0f, Set.of(), true);
    acc.add("q", new float[] {1, -2, 3, 0}, 2);
    acc.share("k", "q");
    acc.share("v", "q");
    acc.add("q", new float[] {-1, 2}, 2);
    acc.share("k", "q"); // every batch reports the alias again: idempotent
    CalibrationStats stats = acc.result(Map.of());

    assertThat(stats.layers().keySet()).containsExactly("q", "k", "v");
    for (String m : new String[] {"k", "v"}) {
      LayerStats s = stats.layer(m);
      assertThat(s.module()).isEqualTo(m);
      assertThat(s.tokens()).isEqualTo(3);
      assertThat(s.absMax()).containsExactly(3f, 2f);
      assertThat(s.gram()).containsExactly(11, -4, -4, 8);
    }
    assertThatThrownBy(() -> acc.add("k", new float[] {1, 1}, 2))
        .isInstanceOf(IllegalStateException.class)
        .hasMessageContaining("shares the statistics of q");
    assertThatThrownBy(() -> acc.share("o", "missing")).isInstanceOf(IllegalStateException.class);
  }
}
