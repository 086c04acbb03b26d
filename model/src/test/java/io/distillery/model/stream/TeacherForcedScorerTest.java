package io.distillery.model.stream;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.assertj.core.api.Assertions.within;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import io.distillery.model.CorruptCheckpointException;
import io.distillery.model.config.LlamaConfig;
import io.distillery.model.config.LlamaTensorNames;
import io.distillery.model.llama.LlamaModel;
import io.distillery.model.quant.CompressedTensors;
import io.distillery.model.quant.GroupQuantizer;
import io.distillery.model.quant.QuantizationScheme;
import io.distillery.model.quant.QuantizedWeight;
import io.distillery.model.safetensors.DType;
import io.distillery.model.tasks.TaskBatch;
import io.distillery.model.tasks.TaskExample;
import io.distillery.model.tokenizer.ByteTokenizer;
import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

class TeacherForcedScorerTest {

  @TempDir Path dir;

  static final List<TaskExample> EXAMPLES =
      List.of(
          new TaskExample("t", "abc=", "x"),
          new TaskExample("t", "hello, ", "world"),
          new TaskExample("t", "q", "ab"),
          new TaskExample("t", "1+1=", "2"),
          new TaskExample("t", "a much longer prompt:", "yes"));

  static LlamaConfig config(boolean tied) {
    return LlamaConfig.builder()
        .vocabSize(300)
        .hiddenSize(32)
        .intermediateSize(64)
        .numHiddenLayers(2)
        .numAttentionHeads(4)
        .numKeyValueHeads(2)
        .maxPositionEmbeddings(64)
        .rmsNormEps(1e-5)
        .tieWordEmbeddings(tied)
        .bosTokenId(ByteTokenizer.BOS_ID)
        .eosTokenIds(List.of(ByteTokenizer.EOS_ID))
        .build();
  }

  static List<TaskBatch> batches(int size) {
    List<TaskBatch> out = new ArrayList<>();
    for (int from = 0; from < EXAMPLES.size(); from += size) {
      out.add(
          TaskBatch.of(
              EXAMPLES.subList(from, Math.min(EXAMPLES.size(), from + size)),
              ByteTokenizer.instance()));
    }
    return out;
  }

  /**
   * The whole-model path's log p(target) and argmax at the scored positions, as the evaluator
   * computes them.
   */
  static TeacherForcedScorer.Result whole(LlamaModel model, List<TaskBatch> batches) {
    return whole(model, null, batches);
  }

  /**
   * ... and KL(P_reference || P_model) there, as the evaluator's whole-model path computes it; null
   * without one.
   */
  static TeacherForcedScorer.Result whole(
      LlamaModel model, LlamaModel reference, List<TaskBatch> batches) {
    List<Double> logProb = new ArrayList<>();
    List<Double> kl = new ArrayList<>();
    List<Integer> argmax = new ArrayList<>();
    List<Integer> sequence = new ArrayList<>();
    List<Integer> target = new ArrayList<>();
    int row0 = 0;
    for (TaskBatch b : batches) {
      try (NDManager scope = model.manager().newSubManager()) {
        NDArray logProbs = model.forward(scope, b.inputs()).logSoftmax(-1);
        int vocab = Math.toIntExact(logProbs.getShape().get(2));
        float[] all = logProbs.toFloatArray();
        long[] top = logProbs.argMax(-1).toLongArray();
        float[] klAll = null;
        if (reference != null) {
          NDArray refLogProbs = reference.forward(scope, b.inputs()).logSoftmax(-1);
          klAll =
              refLogProbs.exp().mul(refLogProbs.sub(logProbs)).sum(new int[] {-1}).toFloatArray();
        }
        for (int p = 0; p < b.mask().length; p++) {
          if (b.mask()[p] > 0) {
            int t = Math.toIntExact(b.targets()[p]);
            logProb.add((double) all[p * vocab + t]);
            argmax.add((int) top[p]);
            target.add(t);
            sequence.add(row0 + p / b.length());
            if (klAll != null) {
              kl.add(Math.max(0.0, klAll[p]));
            }
          }
        }
      }
      row0 += b.size();
    }
    return new TeacherForcedScorer.Result(
        logProb.stream().mapToDouble(Double::doubleValue).toArray(),
        argmax.stream().mapToInt(Integer::intValue).toArray(),
        target.stream().mapToInt(Integer::intValue).toArray(),
        sequence.stream().mapToInt(Integer::intValue).toArray(),
        row0,
        0,
        reference == null ? null : kl.stream().mapToDouble(Double::doubleValue).toArray(),
        null);
  }

  static void assertSame(TeacherForcedScorer.Result streamed, TeacherForcedScorer.Result whole) {
    assertThat(streamed.logProb()).hasSameSizeAs(whole.logProb()).hasSizeGreaterThan(10);
    for (int i = 0; i < whole.logProb().length; i++) {
      assertThat(streamed.logProb()[i])
          .as("log p at scored position %d", i)
          .isCloseTo(whole.logProb()[i], within(1e-5));
    }
    assertThat(streamed.argmax()).containsExactly(whole.argmax());
    assertThat(streamed.target()).containsExactly(whole.target());
    assertThat(streamed.sequence()).containsExactly(whole.sequence());
    assertThat(streamed.exact()).containsExactly(whole.exact());
    if (whole.klFromReference() != null) {
      assertThat(streamed.klFromReference()).hasSameSizeAs(whole.klFromReference());
      for (int i = 0; i < whole.klFromReference().length; i++) {
        assertThat(streamed.klFromReference()[i])
            .as("KL at scored position %d", i)
            .isCloseTo(whole.klFromReference()[i], within(1e-5));
      }
      assertThat(Arrays.stream(whole.klFromReference()).max().orElseThrow())
          .as("a KL worth comparing")
          .isGreaterThan(1e-3);
    }
  }

  static TeacherForcedScorer.Result streamed(
      Path checkpoint, LlamaConfig config, int headRows, List<TaskBatch> batches) throws Exception {
    List<String> steps = new ArrayList<>();
    TeacherForcedScorer.Result r =
        new TeacherForcedScorer(checkpoint, config, headRows)
            .score(batches, (done, total, step) -> steps.add(step));
    assertThat(steps).contains("layer 1/2", "layer 2/2", "scored");
    return r;
  }

  @Test
  void streamedScoresEqualTheWholeModelsOnUntiedBf16WithHeadChunksThatDoNotDivideTheVocab()
      throws Exception {
    LlamaConfig config = config(false);
    Path path = dir.resolve("bf16");
    try (LlamaModel random = LlamaModel.random(config, 11)) {
      random.save(path, DType.BF16);
    }
    List<TaskBatch> batches = batches(2);
    try (LlamaModel model = LlamaModel.load(path)) {
      assertSame(streamed(path, config, 7, batches), whole(model, batches));
    }
  }

  @Test
  void streamedScoresEqualTheWholeModelsOnTiedF32() throws Exception {
    LlamaConfig config = config(true);
    Path path = dir.resolve("tied");
    try (LlamaModel random = LlamaModel.random(config, 12)) {
      random.save(path, DType.F32);
    }
    List<TaskBatch> batches = batches(5);
    try (LlamaModel model = LlamaModel.load(path)) {
      assertSame(streamed(path, config, 128, batches), whole(model, batches));
    }
  }

  @ParameterizedTest
  @ValueSource(strings = {"w4-g16", "w8a8", "fp8"})
  void streamedScoresEqualTheDequantizedModelsOnCompressedTensors(String scheme) throws Exception {
    LlamaConfig config = config(false);
    Map<String, float[]> dense = new LinkedHashMap<>();
    Path reference = dir.resolve("reference");
    try (LlamaModel random = LlamaModel.random(config, 13)) {
      random.parameters().forEach((name, a) -> dense.put(name, a.toFloatArray()));
      // the reference: the same model with every linear weight x10, so that its next-token
      // distributions are far from
      // uniform and the KL between the two is O(1), not ~0
      for (String module : random.linearLayerNames()) {
        float[] w = random.linearWeight(module);
        for (int i = 0; i < w.length; i++) {
          w[i] *= 10;
        }
        random.replaceLinearWeight(module, w);
      }
      random.save(reference, DType.F32);
    }
    boolean w4 = scheme.equals("w4-g16");
    boolean fp8 = scheme.equals("fp8");
    Map<String, QuantizedWeight> quantized = new LinkedHashMap<>();
    Map<String, Float> inputScales = new LinkedHashMap<>();
    for (String module : LlamaTensorNames.linearModules(config)) {
      if (!module.equals(LlamaTensorNames.LM_HEAD_MODULE)) {
        long[] shape = LlamaTensorNames.shapes(config).get(LlamaTensorNames.weight(module));
        float[] w = dense.get(LlamaTensorNames.weight(module));
        quantized.put(
            module,
            w4
                ? GroupQuantizer.int4Group(w, (int) shape[0], (int) shape[1], 16)
                : fp8
                    ? GroupQuantizer.fp8PerChannel(w, (int) shape[0], (int) shape[1])
                    : GroupQuantizer.int8PerChannel(w, (int) shape[0], (int) shape[1]));
        inputScales.put(module, 0.01f);
      }
    }
    Path path = dir.resolve(scheme);
    boolean w8a8 = !w4 && !fp8;
    QuantizedWeight.Kind kind =
        w4
            ? QuantizedWeight.Kind.INT4_GROUP
            : fp8 ? QuantizedWeight.Kind.FP8_CHANNEL : QuantizedWeight.Kind.INT8_CHANNEL;
    CompressedTensors.write(
        path,
        config,
        dense,
        quantized,
        w8a8 ? inputScales : Map.of(),
        new QuantizationScheme(kind, w4 ? 16 : 0, w8a8, List.of(LlamaTensorNames.LM_HEAD_MODULE)));
    List<TaskBatch> batches = batches(3);
    TeacherForcedScorer.Result referenceScores = streamed(reference, config, 64, batches);
    TeacherForcedScorer.Result scores =
        new TeacherForcedScorer(path, config, 64)
            .score(batches, referenceScores.asReference(), (done, total, step) -> {});
    try (LlamaModel model = CompressedTensors.loadAny(path);
        LlamaModel ref = LlamaModel.load(reference)) {
      assertSame(scores, whole(model, ref, batches));
    }
  }

  @Test
  void shouldFailNamingTheTensorWhoseShapeDisagreesWithConfigJson() throws Exception {
    LlamaConfig config = config(false);
    Path path = dir.resolve("model");
    try (LlamaModel random = LlamaModel.random(config, 14)) {
      random.save(path, DType.BF16);
    }
    LlamaConfig wrong =
        LlamaConfig.builder()
            .vocabSize(300)
            .hiddenSize(32)
            .intermediateSize(48)
            .numHiddenLayers(2)
            .numAttentionHeads(4)
            .numKeyValueHeads(2)
            .maxPositionEmbeddings(64)
            .rmsNormEps(1e-5)
            .build();
    assertThatThrownBy(
            () -> new TeacherForcedScorer(path, wrong, 64).score(batches(5), (d, t, s) -> {}))
        .isInstanceOf(CorruptCheckpointException.class)
        .hasMessageContaining(
            "model.layers.0.mlp.gate_proj.weight' has shape [64, 32] but config.json implies "
                + "[48, 32]");
  }

  @Test
  void exactIsFalseForARowWithOneWrongArgmax() {
    TeacherForcedScorer.Result r =
        new TeacherForcedScorer.Result(
            new double[3], new int[] {1, 2, 3}, new int[] {1, 2, 4}, new int[] {0, 1, 1}, 3, 0);
    assertThat(r.exact()).containsExactly(true, false, true);
  }

  @Test
  void peakGrowsWithTheHeadChunk() throws IOException {
    LlamaConfig config = config(false);
    List<TaskBatch> batches = batches(2);
    assertThat(TeacherForcedScorer.peakBytes(config, batches, 300))
        .isGreaterThan(TeacherForcedScorer.peakBytes(config, batches, 10));
  }
}
