package io.distillery.model.llama;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import io.distillery.model.config.Architecture;
import io.distillery.model.config.LlamaConfig;
import io.distillery.model.config.LlamaTensorNames;
import io.distillery.model.safetensors.Checkpoint;
import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class LlamaForwardTest {

  private static final double TOLERANCE = 1e-4;

  @TempDir Path dir;

  private NDManager manager;

  @BeforeEach
  void setUp() {
    manager = Engine.getEngine("PyTorch").newBaseManager();
  }

  @AfterEach
  void tearDown() {
    manager.close();
  }

  @Test
  void shouldMatchReferenceWhenEmbeddingsAreSeparate() throws IOException {
    assertMatchesReference(TinyModels.tiny(false), 11);
  }

  @Test
  void shouldMatchReferenceWhenEmbeddingsAreTied() throws IOException {
    assertMatchesReference(TinyModels.tiny(true), 12);
  }

  @Test
  void shouldMatchReferenceWhenQwen2HasQkvBiases() throws IOException {
    assertMatchesReference(TinyModels.tinyQwen2(), 13);
  }

  @Test
  void shouldMatchReferenceWhenMistralWindowHidesOldPositions() throws IOException {
    LlamaConfig config =
        TinyModels.tiny().architecture(Architecture.MISTRAL).slidingWindow(3).build();
    assertMatchesReference(config, 14);
  }

  @Test
  void shouldMatchReferenceWhenLlamaHasAttentionBias() throws IOException {
    assertMatchesReference(TinyModels.tiny().attentionBias(true).build(), 15);
  }

  private void assertMatchesReference(LlamaConfig config, long seed) throws IOException {
    TinyModels.writeRandomCheckpoint(dir, config, seed);
    int[][] tokens = TinyModels.tokens(2, 7, config.vocabSize(), seed);
    try (Checkpoint checkpoint = Checkpoint.open(dir);
        LlamaModel model = LlamaModel.load(dir, manager)) {
      ReferenceLlama reference = new ReferenceLlama(config, checkpoint);
      try (NDArray logits = model.forward(manager, tokens)) {
        assertThat(logits.getShape().getShape()).containsExactly(2, 7, config.vocabSize());
        float[] actual = logits.toFloatArray();
        double[] expected = flatten(reference.forward(tokens[0]), reference.forward(tokens[1]));
        assertThat(TinyModels.relativeMaxError(actual, expected)).isLessThan(TOLERANCE);
      }
    }
  }

  @Test
  void shouldMatchFullForwardWhenDecodingWithKvCache() throws IOException {
    LlamaConfig config =
        TinyModels.tiny().architecture(Architecture.MISTRAL).slidingWindow(4).build();
    TinyModels.writeRandomCheckpoint(dir, config, 21);
    int[][] tokens = TinyModels.tokens(2, 9, config.vocabSize(), 21);
    try (LlamaModel model = LlamaModel.load(dir, manager);
        NDArray full = model.forward(manager, tokens);
        KvCache cache = model.newKvCache()) {
      float[] expected = full.toFloatArray();
      List<float[]> steps = new ArrayList<>();
      try (NDArray prefix = model.forward(manager, slice(tokens, 0, 5), cache)) {
        steps.add(prefix.toFloatArray());
      }
      for (int position = 5; position < 9; position++) {
        try (NDArray step = model.forward(manager, slice(tokens, position, position + 1), cache)) {
          assertThat(step.getShape().getShape()).containsExactly(2, 1, config.vocabSize());
          steps.add(step.toFloatArray());
        }
      }
      assertThat(cache.length()).isEqualTo(9);
      float[] incremental = interleave(steps, 2, new int[] {5, 1, 1, 1, 1}, config.vocabSize());
      double[] reference = new double[expected.length];
      Arrays.setAll(reference, i -> expected[i]);
      assertThat(TinyModels.relativeMaxError(incremental, reference)).isLessThan(TOLERANCE);
    }
  }

  @Test
  void shouldGenerateSameTokensWhenCachedAndUncached() throws IOException {
    LlamaConfig config = TinyModels.tiny(false);
    TinyModels.writeRandomCheckpoint(dir, config, 31);
    int[] prompt = {3, 14, 15, 9, 26};
    try (LlamaModel model = LlamaModel.load(dir, manager)) {
      int[] cached = model.generate(prompt, 12, SamplingParams.greedy(), -1);
      int[] uncached = new int[12];
      int[] sequence = prompt;
      for (int step = 0; step < 12; step++) {
        try (NDArray logits = model.forward(manager, new int[][] {sequence})) {
          float[] all = logits.toFloatArray();
          float[] last =
              Arrays.copyOfRange(all, (sequence.length - 1) * config.vocabSize(), all.length);
          uncached[step] = TokenSampler.argMax(last);
        }
        sequence = Arrays.copyOf(sequence, sequence.length + 1);
        sequence[sequence.length - 1] = uncached[step];
      }
      assertThat(cached).containsExactly(uncached);
      assertThat(Arrays.stream(cached).distinct().count())
          .as("not a degenerate constant output")
          .isGreaterThan(1);
    }
  }

  @Test
  void shouldStopAfterStopTokenWhenGenerating() throws IOException {
    LlamaConfig config = TinyModels.tiny(false);
    TinyModels.writeRandomCheckpoint(dir, config, 31);
    try (LlamaModel model = LlamaModel.load(dir, manager)) {
      int[] free = model.generate(new int[] {3, 14, 15, 9, 26}, 12, SamplingParams.greedy(), -1);
      int stop = free[3];
      int firstStop = Arrays.stream(free).boxed().toList().indexOf(stop);
      int[] stopped =
          model.generate(new int[] {3, 14, 15, 9, 26}, 12, SamplingParams.greedy(), stop);
      assertThat(stopped).containsExactly(Arrays.copyOf(free, firstStop + 1));
    }
  }

  @Test
  void shouldRepeatSampledGenerationWhenSeedIsTheSame() throws IOException {
    LlamaConfig config = TinyModels.tiny(false);
    TinyModels.writeRandomCheckpoint(dir, config, 41);
    try (LlamaModel model = LlamaModel.load(dir, manager)) {
      int[] prompt = {1, 2, 3};
      int[] first = model.generate(prompt, 16, SamplingParams.sampled(2.0, 0.95, 7), -1);
      int[] again = model.generate(prompt, 16, SamplingParams.sampled(2.0, 0.95, 7), -1);
      int[] otherSeed = model.generate(prompt, 16, SamplingParams.sampled(2.0, 0.95, 8), -1);
      int[] greedy = model.generate(prompt, 16, SamplingParams.greedy(), -1);
      assertThat(first).hasSize(16).containsExactly(again);
      assertThat(first).isNotEqualTo(greedy).isNotEqualTo(otherSeed);
    }
  }

  @Test
  void shouldReportEveryLinearInputWhenObserved() throws IOException {
    LlamaConfig config = TinyModels.tiny(false);
    TinyModels.writeRandomCheckpoint(dir, config, 51);
    List<String> seen = new ArrayList<>();
    List<long[]> shapes = new ArrayList<>();
    try (LlamaModel model = LlamaModel.load(dir, manager)) {
      LlamaModel.ObserverRegistration registration =
          model.observeLinearInputs(
              (module, input) -> {
                seen.add(module);
                shapes.add(input.getShape().getShape());
              });
      model.forward(manager, TinyModels.tokens(2, 5, 64, 1)).close();
      registration.close();
      assertThat(seen).containsExactlyElementsOf(model.linearLayerNames());
      assertThat(seen).hasSize(2 * 7 + 1).contains("model.layers.1.mlp.down_proj", "lm_head");
      assertThat(shapes.get(seen.indexOf("model.layers.0.self_attn.q_proj")))
          .containsExactly(2, 5, 32);
      assertThat(shapes.get(seen.indexOf("model.layers.0.mlp.down_proj")))
          .containsExactly(2, 5, 64);
      seen.clear();
      model.forward(manager, TinyModels.tokens(1, 2, 64, 1)).close();
      assertThat(seen).as("observer removed when registration closed").isEmpty();
    }
  }

  @Test
  void shouldUseReplacedWeightWhenLinearLayerIsReplaced() throws IOException {
    LlamaConfig config = TinyModels.tiny(false);
    TinyModels.writeRandomCheckpoint(dir, config, 61);
    int[][] tokens = TinyModels.tokens(1, 6, 64, 2);
    try (Checkpoint checkpoint = Checkpoint.open(dir);
        LlamaModel model = LlamaModel.load(dir, manager)) {
      ReferenceLlama reference = new ReferenceLlama(config, checkpoint);
      String module = "model.layers.1.mlp.up_proj";
      float[] halved = model.linearWeight(module);
      for (int i = 0; i < halved.length; i++) {
        halved[i] = i % 3 == 0 ? 0f : halved[i] * 0.5f;
      }
      model.replaceLinearWeight(module, halved);
      reference.setWeight(LlamaTensorNames.weight(module), halved);
      try (NDArray logits = model.forward(manager, tokens)) {
        assertThat(
                TinyModels.relativeMaxError(
                    logits.toFloatArray(), flatten(reference.forward(tokens[0]))))
            .isLessThan(TOLERANCE);
      }
      model.replaceLinearWeight("lm_head", new float[64 * 32]);
      try (NDArray logits = model.forward(manager, tokens)) {
        assertThat(logits.abs().max().getFloat()).isZero();
      }
      assertThatThrownBy(() -> model.replaceLinearWeight(module, new float[3]))
          .isInstanceOf(IllegalArgumentException.class)
          .hasMessageContaining(module);
      assertThatThrownBy(() -> model.replaceLinearWeight("model.layers.9.mlp.up_proj", halved))
          .isInstanceOf(IllegalArgumentException.class);
    }
  }

  @Test
  void shouldKeepManagedArrayCountWhenForwardRepeats() {
    try (LlamaModel model = LlamaModel.random(TinyModels.tiny(false), 5, manager)) {
      int[][] tokens = TinyModels.tokens(2, 6, 64, 3);
      model.forward(manager, tokens).close();
      model.generate(new int[] {1, 2}, 3, SamplingParams.greedy(), -1);
      int before = manager.getManagedArrays().size();
      for (int i = 0; i < 5; i++) {
        model.forward(manager, tokens).close();
        model.generate(new int[] {1, 2}, 3, SamplingParams.greedy(), -1);
      }
      assertThat(manager.getManagedArrays()).hasSize(before);
    }
  }

  @Test
  void shouldGiveSameLogitsWhenIdsAreInt32OrInt64() {
    try (LlamaModel model = LlamaModel.random(TinyModels.tiny(false), 5, manager);
        NDArray ints = manager.create(new int[] {4, 8, 15, 16, 23, 42}, new Shape(2, 3));
        NDArray longs = manager.create(new long[] {4, 8, 15, 16, 23, 42}, new Shape(2, 3));
        NDArray fromInts = model.forward(ints);
        NDArray fromLongs = model.forward(longs)) {
      assertThat(fromInts.getManager()).isSameAs(manager);
      assertThat(fromInts.toFloatArray()).containsExactly(fromLongs.toFloatArray());
    }
  }

  @Test
  void shouldRefuseTokenIdsWhenOutsideVocabulary() {
    try (LlamaModel model = LlamaModel.random(TinyModels.tiny(false), 5, manager)) {
      assertThatThrownBy(() -> model.forward(manager, new int[][] {{1, 64}}))
          .isInstanceOf(IllegalArgumentException.class)
          .hasMessageContaining("64");
      assertThatThrownBy(() -> model.forward(manager, new int[][] {{1, 2}, {3}}))
          .isInstanceOf(IllegalArgumentException.class);
    }
  }

  private static double[] flatten(double[][]... sequences) {
    return Arrays.stream(sequences)
        .flatMap(Arrays::stream)
        .flatMapToDouble(Arrays::stream)
        .toArray();
  }

  private static int[][] slice(int[][] tokens, int from, int to) {
    return Arrays.stream(tokens)
        .map(row -> Arrays.copyOfRange(row, from, to))
        .toArray(int[][]::new);
  }

  /** Reassembles [batch, len_i, vocab] chunks into one [batch, sum(len), vocab] array. */
  private static float[] interleave(List<float[]> chunks, int batch, int[] lengths, int vocab) {
    int total = Arrays.stream(lengths).sum();
    float[] out = new float[batch * total * vocab];
    int offset = 0;
    for (int c = 0; c < chunks.size(); c++) {
      for (int b = 0; b < batch; b++) {
        System.arraycopy(
            chunks.get(c),
            b * lengths[c] * vocab,
            out,
            (b * total + offset) * vocab,
            lengths[c] * vocab);
      }
      offset += lengths[c];
    }
    return out;
  }
}
