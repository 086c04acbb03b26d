package io.distillery.distiller.teacher;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.within;

import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class TopKSelectorTest {

  @Test
  void shouldKeepTheLargestLogitsAndTheRestMassWhenRowsArriveInChunks() {
    float[] logits = {1f, 3f, 2f, 3f, -1f};
    double lse = 0;
    for (float l : logits) {
      lse += Math.exp(l);
    }
    lse = Math.log(lse);
    TopKSelector chunked = new TopKSelector(1, 2, 5);
    chunked.offer(0, 0, logits, 0, 2); // ids 0, 1
    chunked.offer(0, 2, logits, 2, 3); // ids 2, 3, 4
    TopKLogits t = chunked.finish("f", new int[] {0, 1});
    assertThat(t.ids()).containsExactly(1, 3); // tie at 3: the lower id first
    assertThat((double) t.logProbs()[0]).isCloseTo(3 - lse, within(1e-6));
    assertThat((double) t.logProbs()[1]).isCloseTo(3 - lse, within(1e-6));
    double rest = Math.log(Math.exp(1 - lse) + Math.exp(2 - lse) + Math.exp(-1 - lse));
    assertThat((double) t.restLogMass()[0]).isCloseTo(rest, within(1e-6));

    TopKSelector whole = new TopKSelector(1, 2, 5);
    whole.offer(0, 0, logits, 0, 5);
    assertThat(whole.finish("f", new int[] {0, 1})).isEqualTo(t);
  }

  @Test
  void shouldHaveNoRestMassWhenKCoversTheVocabulary() {
    TopKSelector s = new TopKSelector(2, 3, 3);
    s.offer(0, 0, new float[] {0f, 1f, 2f, 5f, 4f, 3f}, 0, 3);
    s.offer(1, 0, new float[] {0f, 1f, 2f, 5f, 4f, 3f}, 3, 3);
    TopKLogits t = s.finish("f", new int[] {0, 1, 2});
    assertThat(t.complete()).isTrue();
    assertThat(t.ids()).containsExactly(2, 1, 0, 0, 1, 2);
    assertThat(t.restLogMass()).containsExactly(Float.NEGATIVE_INFINITY, Float.NEGATIVE_INFINITY);
  }

  @Test
  void shouldReadBackWhatItWroteWhenTheFileIsWhole(@TempDir Path dir) throws Exception {
    TopKSelector s = new TopKSelector(3, 2, 4);
    float[] row = {0.5f, -1f, 2f, 0f};
    for (int p = 0; p < 3; p++) {
      s.offer(p, 0, row, 0, 4);
    }
    TopKLogits t = s.finish("abc", new int[] {0, 1, 3});
    Path file = dir.resolve("x.topk");
    t.write(file);
    TopKLogits back = TopKLogits.read(file);
    assertThat(back).isEqualTo(t);
    assertThat(back.positions(1)).isEqualTo(2);
    assertThat(back.offset(1)).isEqualTo(1);
  }
}
