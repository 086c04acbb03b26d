package io.distillery.calibrator;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.assertj.core.api.Assertions.within;

import ai.djl.ndarray.NDManager;
import io.distillery.model.calib.CalibrationStats;
import io.distillery.model.calib.LayerStats;
import io.distillery.model.config.LlamaConfig;
import io.distillery.model.llama.LlamaModel;
import io.distillery.model.safetensors.DType;
import io.distillery.model.stream.CalibrationTokens;
import io.distillery.model.tasks.TaskSettings;
import io.distillery.model.tokenizer.ByteTokenizer;
import io.distillery.schemas.common.ArtefactRef;
import io.distillery.schemas.job.StageJob;
import io.distillery.stage.StageContext;
import io.distillery.stage.StageException;
import io.distillery.stage.StageParams;
import io.distillery.stage.StageRegistry;
import io.distillery.stage.StageResult;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class CalibratorStageTest {

  private static final String MODEL_SHA = "ab".repeat(32);
  private static final String DOWN = "model.layers.1.mlp.down_proj";

  @TempDir static Path modelDir;
  @TempDir Path scratch;

  @BeforeAll
  static void saveTinyModel() throws IOException {
    LlamaConfig config =
        LlamaConfig.builder()
            .vocabSize(ByteTokenizer.VOCAB_SIZE)
            .hiddenSize(32)
            .intermediateSize(64)
            .numHiddenLayers(2)
            .numAttentionHeads(4)
            .numKeyValueHeads(2)
            .maxPositionEmbeddings(128)
            .rmsNormEps(1e-5)
            .tieWordEmbeddings(false)
            .build();
    try (LlamaModel model = LlamaModel.random(config, 7)) {
      model.save(modelDir, DType.F32);
    }
    ByteTokenizer.instance().save(modelDir);
  }

  @Test
  void shouldDrawTaskSamplesFromTheSettingsTheModelWasTrainedOn(@TempDir Path trained)
      throws Exception {
    TaskSettings twoDigits = TaskSettings.defaults().withAdditionDigits(2).withRecallPairs(2);
    Path model = trainedWith(trained, "{}");
    twoDigits.write(model);
    CalibratorParams params = new CalibratorParams(10, 64, null, false, 256, 3L);

    StageResult result =
        new CalibratorStage().run(context(model, params, List.of(), new ArrayList<>(), scratch));

    long expected =
        CalibrationSamples.tokenize(
                CalibrationSamples.fromTasks(10, 3L, twoDigits),
                ByteTokenizer.instance(),
                64,
                ByteTokenizer.VOCAB_SIZE)
            .stream()
            .mapToLong(s -> s.length)
            .sum();
    long withDefaults =
        CalibrationSamples.tokenize(
                CalibrationSamples.fromTasks(10, 3L, TaskSettings.defaults()),
                ByteTokenizer.instance(),
                64,
                ByteTokenizer.VOCAB_SIZE)
            .stream()
            .mapToLong(s -> s.length)
            .sum();
    assertThat(expected).isLessThan(withDefaults); // shorter additions and fewer recall pairs
    CalibrationStats stats = CalibrationStats.readArtefact(result.outputs().getFirst().path());
    assertThat(stats.layers().get(DOWN).tokens()).isEqualTo(expected);
  }

  @Test
  void shouldFailFatallyNamingTheFileWhenTheModelsTaskSettingsAreBroken(@TempDir Path trained)
      throws Exception {
    Path model = trainedWith(trained, "{\"additionDigits\": 0}");
    CalibratorParams params = new CalibratorParams(4, 64, null, false, 256, 3L);

    assertThatThrownBy(
            () ->
                new CalibratorStage()
                    .run(context(model, params, List.of(), new ArrayList<>(), scratch)))
        .isInstanceOf(StageException.Fatal.class)
        .hasMessageContaining(TaskSettings.FILE_NAME);
  }

  @Test
  void shouldRecordEveryLinearLayerOverExactlyTheTokensFedWhenCalibratingOnTasks()
      throws Exception {
    CalibratorParams params = new CalibratorParams(12, 64, null, true, 256, 3L);
    List<Double> percents = new ArrayList<>();

    StageResult result = new CalibratorStage().run(context(params, List.of(), percents));

    assertThat(result.outputs()).hasSize(1);
    assertThat(result.outputs().getFirst().format()).isEqualTo(CalibrationStats.FORMAT);
    CalibrationStats stats = CalibrationStats.readArtefact(result.outputs().getFirst().path());
    List<int[]> fed =
        CalibrationSamples.tokenize(
            CalibrationSamples.fromTasks(12, 3L, TaskSettings.defaults()),
            ByteTokenizer.instance(),
            64,
            ByteTokenizer.VOCAB_SIZE);
    long tokens = fed.stream().mapToLong(s -> s.length).sum();
    // the token ids of exactly the samples fed ride along, for the streamed stages
    CalibrationTokens written = CalibrationTokens.readArtefact(result.outputs().getFirst().path());
    assertThat(written.samples()).hasSameSizeAs(fed);
    for (int i = 0; i < fed.size(); i++) {
      assertThat(written.samples().get(i)).containsExactly(fed.get(i));
    }
    try (LlamaModel model = LlamaModel.load(modelDir)) {
      assertThat(stats.layers().keySet())
          .containsExactlyInAnyOrderElementsOf(model.linearLayerNames());
      for (LayerStats layer : stats.layers().values()) {
        assertThat(layer.tokens()).as(layer.module()).isEqualTo(tokens);
        assertThat(layer.gram())
            .as(layer.module())
            .hasSize(layer.inFeatures() * layer.inFeatures());
        assertThat(layer.histogram()).hasSize(256);
        assertThat(java.util.Arrays.stream(layer.histogram()).sum())
            .isEqualTo(tokens * layer.inFeatures());
        for (int j = 0;
            j < layer.inFeatures();
            j++) { // diag(X^T X) is each channel's sum of squares
          assertThat(layer.gram()[j * layer.inFeatures() + j])
              .isCloseTo(layer.sumSq()[j], within(1e-4 * Math.max(1, layer.sumSq()[j])));
        }
      }
      // q/k/v read one tensor: shared statistics, stored under each name
      assertThat(stats.layer("model.layers.0.self_attn.k_proj").absMax())
          .containsExactly(stats.layer("model.layers.0.self_attn.q_proj").absMax());
      assertThat(stats.layer(DOWN).inFeatures()).isEqualTo(64);

      float[] expected = directAbsMax(model, fed, DOWN);
      float[] actual = stats.layer(DOWN).absMax();
      for (int j = 0; j < expected.length; j++) {
        assertThat(actual[j])
            .as("channel %d", j)
            .isCloseTo(expected[j], within(1e-5f * Math.max(1, expected[j])));
      }
    }
    assertThat(stats.metadata())
        .containsEntry("tokens", Long.toString(tokens))
        .containsEntry("samples", "12")
        .containsEntry("seqLen", "64")
        .containsEntry("source", "tasks")
        .containsEntry("model_sha256", MODEL_SHA);
    assertThat(result.metrics())
        .containsEntry("tokens", (double) tokens)
        .containsEntry("layers", 15.0)
        .containsKey("seconds");
    assertThat(percents).isSorted().last().isEqualTo(100.0);
  }

  @Test
  void shouldReadPromptsAndTextsAndSkipTheHessianWhenSourceIsADatasetAndHessianIsOff()
      throws Exception {
    Path data =
        Files.writeString(
            scratch.resolve("calib.jsonl"),
            "{\"prompt\":\"12+3=\",\"answer\":\"15\"}\n\n{\"text\":\"hello calibration\"}\n{\"text\":\"not used\"}\n");
    Path out = Files.createDirectories(scratch.resolve("out"));
    CalibratorParams params = new CalibratorParams(2, 8, "dataset", false, null, null);

    StageResult result =
        new CalibratorStage().run(context(params, List.of(dataset(data)), new ArrayList<>(), out));

    CalibrationStats stats = CalibrationStats.readArtefact(result.outputs().getFirst().path());
    // BOS + 7 bytes of "12+3=15", and BOS + the first 7 bytes of "hello calibration" (truncated to
    // seqLen 8)
    assertThat(stats.metadata())
        .containsEntry("samples", "2")
        .containsEntry("tokens", "16")
        .containsEntry("source", "dataset")
        .containsEntry("dataset_sha256", "cd".repeat(32));
    assertThat(stats.layers().values())
        .allSatisfy(
            l -> {
              assertThat(l.gram()).isNull();
              assertThat(l.tokens()).isEqualTo(16);
              assertThat(l.histogram()).hasSize(2048);
            });
  }

  @Test
  void shouldFailClearlyWhenTheDatasetHasNoSamples() throws Exception {
    Path empty = Files.writeString(scratch.resolve("empty.txt"), "\n  \n");
    CalibratorParams params = new CalibratorParams(4, 16, "dataset", false, null, null);

    assertThatThrownBy(
            () ->
                new CalibratorStage()
                    .run(context(params, List.of(dataset(empty)), new ArrayList<>())))
        .isInstanceOf(StageException.Fatal.class)
        .hasMessageContaining("empty.txt has no samples");
  }

  @Test
  void shouldFailWhenSourceIsDatasetButNoDatasetIsAnInput() {
    CalibratorParams params = new CalibratorParams(4, 16, "dataset", false, null, null);

    assertThatThrownBy(
            () -> new CalibratorStage().run(context(params, List.of(), new ArrayList<>())))
        .isInstanceOf(StageException.Fatal.class)
        .hasMessageContaining("format 'dataset'");
  }

  @Test
  void shouldFailOnAMalformedDatasetLineWithItsLineNumber() throws Exception {
    Path bad =
        Files.writeString(
            scratch.resolve("bad.jsonl"), "{\"text\":\"ok\"}\n{\"answer\":\"no prompt\"}\n");
    CalibratorParams params = new CalibratorParams(4, 16, "dataset", false, null, null);

    assertThatThrownBy(
            () ->
                new CalibratorStage()
                    .run(context(params, List.of(dataset(bad)), new ArrayList<>())))
        .isInstanceOf(StageException.Fatal.class)
        .hasMessageContaining("bad.jsonl:2");
  }

  @Test
  void shouldFailFatallyNamingTheArchitectureWhenTheModelIsNotLlama() throws Exception {
    Path gpt2 = Files.createDirectories(scratch.resolve("gpt2"));
    Files.writeString(
        gpt2.resolve("config.json"),
        "{\"architectures\": [\"GPT2LMHeadModel\"], "
            + "\"model_type\": \"gpt2\", \"n_embd\": 32}");
    StageContext<CalibratorParams> ctx =
        context(new CalibratorParams(4, 16, null, false, null, null), List.of(), new ArrayList<>());
    StageContext<CalibratorParams> onGpt2 =
        new StageContext<>(
            ctx.job(),
            ctx.params(),
            gpt2,
            ctx.inputs(),
            ctx.scratch(),
            ctx.workDir(),
            ctx.progressSink());

    assertThatThrownBy(() -> new CalibratorStage().run(onGpt2))
        .isInstanceOf(StageException.Fatal.class)
        .hasMessageContaining("GPT2LMHeadModel");
  }

  @Test
  void shouldStreamOneLayerAtATimeWithTheSameStatisticsWhenTheWholeModelCannotFitTheBudget(
      @TempDir Path a, @TempDir Path b) throws Exception {
    CalibratorParams params = new CalibratorParams(12, 64, null, false, 256, 3L);
    StageContext<CalibratorParams> whole = context(params, List.of(), new ArrayList<>(), a);
    StageResult reference = new CalibratorStage().run(whole);
    LlamaConfig config = LlamaConfig.read(modelDir.resolve(LlamaConfig.FILE_NAME));
    // a budget below the whole-model path's needs (it holds the model and a batch's logits) but
    // above the streamed plan
    long budget = CalibratorStage.wholeModelBytes(config, false) - 1;
    StageContext<CalibratorParams> small = context(params, List.of(), new ArrayList<>(), b);
    StageContext<CalibratorParams> streamedCtx =
        new StageContext<>(
            small.job(),
            params,
            small.model(),
            small.inputs(),
            small.scratch(),
            small.workDir(),
            small.progressSink(),
            budget);
    StageResult streamed = new CalibratorStage().run(streamedCtx);

    assertThat(streamed.metrics()).containsEntry("streamed", 1.0);
    CalibrationStats x = CalibrationStats.readArtefact(reference.outputs().getFirst().path());
    CalibrationStats y = CalibrationStats.readArtefact(streamed.outputs().getFirst().path());
    assertThat(CalibrationTokens.readArtefact(streamed.outputs().getFirst().path()).samples())
        .hasSameSizeAs(
            CalibrationTokens.readArtefact(reference.outputs().getFirst().path()).samples());
    // every decoder layer's module, not the LM head (left dense by default, and not streamed)
    assertThat(y.layers().keySet())
        .containsExactlyInAnyOrderElementsOf(
            x.layers().keySet().stream().filter(m -> !m.equals("lm_head")).toList());
    for (LayerStats s : y.layers().values()) {
      LayerStats r = x.layer(s.module());
      assertThat(s.tokens()).isEqualTo(r.tokens());
      assertThat(s.histogram()).as(s.module()).containsExactly(r.histogram());
      for (int j = 0; j < s.inFeatures(); j++) {
        assertThat(s.absMax()[j])
            .as(s.module())
            .isCloseTo(r.absMax()[j], within(1e-5f * Math.max(1, r.absMax()[j])));
        assertThat(s.sumSq()[j])
            .as(s.module())
            .isCloseTo(r.sumSq()[j], within(1e-4f * Math.max(1, r.sumSq()[j])));
      }
    }
  }

  @Test
  void shouldFailWithTheParamNameWhenAParamIsInvalid() {
    for (var bad :
        Map.of(
                "{\"samples\":0}",
                "samples",
                "{\"seqLen\":4}",
                "seqLen",
                "{\"seqLen\":40000}",
                "seqLen",
                "{\"bins\":64}",
                "bins",
                "{\"source\":\"web\"}",
                "source",
                "{\"sample\":3}",
                "sample")
            .entrySet()) {
      assertThatThrownBy(() -> StageParams.bind("calibrator", bad.getKey(), CalibratorParams.class))
          .as(bad.getKey())
          .isInstanceOf(StageException.Fatal.class)
          .hasMessageContaining(bad.getValue());
    }
  }

  @Test
  void shouldUseTheDocumentedDefaultsWhenParamsAreEmpty() throws Exception {
    CalibratorParams p = StageParams.bind("calibrator", "{}", CalibratorParams.class);

    assertThat(p).isEqualTo(new CalibratorParams(128, 256, "tasks", true, 2048, 0L));
  }

  @Test
  void shouldBeDiscoveredAsTheCalibratorStage() {
    assertThat(StageRegistry.discover().get("calibrator").params())
        .isEqualTo(CalibratorParams.class);
  }

  @Test
  void shouldBatchOnlySamplesOfEqualLengthLongestFirst() {
    List<int[]> samples = List.of(new int[3], new int[5], new int[3], new int[3], new int[5]);

    List<int[][]> batches = CalibrationSamples.batches(samples, 6, 16);

    assertThat(batches)
        .extracting(b -> b.length + "x" + b[0].length)
        .containsExactly("1x5", "1x5", "2x3", "1x3");
  }

  /**
   * Abs-max per input channel of one module, each sample run alone through an observer of our own.
   */
  private static float[] directAbsMax(LlamaModel model, List<int[]> samples, String module) {
    float[][] max = new float[1][];
    try (var registration =
            model.observeLinearInputs(
                (name, input) -> {
                  if (!name.equals(module)) {
                    return;
                  }
                  float[] x = input.toFloatArray();
                  int n = Math.toIntExact(input.getShape().get(input.getShape().dimension() - 1));
                  if (max[0] == null) {
                    max[0] = new float[n];
                  }
                  for (int i = 0; i < x.length; i++) {
                    max[0][i % n] = Math.max(max[0][i % n], Math.abs(x[i]));
                  }
                });
        NDManager m = model.manager().newSubManager()) {
      for (int[] s : samples) {
        model.forward(m, new int[][] {s}).close();
      }
    }
    return max[0];
  }

  private static StageContext.Artefact dataset(Path file) throws IOException {
    return new StageContext.Artefact(
        ArtefactRef.newBuilder()
            .setUri(file.toUri().toString())
            .setSha256("cd".repeat(32))
            .setBytes(Files.size(file))
            .setFormat("dataset")
            .build(),
        file);
  }

  private StageContext<CalibratorParams> context(
      CalibratorParams params, List<StageContext.Artefact> inputs, List<Double> percents) {
    return context(params, inputs, percents, scratch);
  }

  private static StageContext<CalibratorParams> context(
      CalibratorParams params,
      List<StageContext.Artefact> inputs,
      List<Double> percents,
      Path scratch) {
    return context(modelDir, params, inputs, percents, scratch);
  }

  private static StageContext<CalibratorParams> context(
      Path model,
      CalibratorParams params,
      List<StageContext.Artefact> inputs,
      List<Double> percents,
      Path scratch) {
    StageJob job =
        StageJob.newBuilder()
            .setRunId("run-1")
            .setJobId("run-1/calibrate")
            .setAttempt(1)
            .setStage("calibrator")
            .setNode("calibrate")
            .setParams("{}")
            .setModel(
                ArtefactRef.newBuilder()
                    .setUri(model.toUri().toString())
                    .setSha256(MODEL_SHA)
                    .setBytes(1)
                    .setFormat("hf-llama")
                    .build())
            .setTimeoutMs(60_000)
            .setDispatchedAt(Instant.now())
            .build();
    List<StageContext.Input> in =
        inputs.isEmpty()
            ? List.of()
            : List.of(new StageContext.Input("data", "dataset", inputs, Map.of()));
    return new StageContext<>(
        job,
        params,
        model,
        in,
        scratch,
        scratch,
        (percent, message, metrics) -> percents.add(percent));
  }

  /**
   * The tiny model, copied into {@code dir} with {@code settings} written beside it as the teacher
   * trainer does.
   */
  private static Path trainedWith(Path dir, String settingsJson) throws IOException {
    try (var files = Files.list(modelDir)) {
      for (Path f : files.toList()) {
        Files.copy(f, dir.resolve(f.getFileName()));
      }
    }
    Files.writeString(dir.resolve(TaskSettings.FILE_NAME), settingsJson);
    return dir;
  }
}
