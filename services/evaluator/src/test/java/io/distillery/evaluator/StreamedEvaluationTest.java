package io.distillery.evaluator;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.assertj.core.api.Assertions.within;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.distillery.evaluator.measure.EvalData;
import io.distillery.evaluator.report.EvaluationReport;
import io.distillery.model.config.LlamaConfig;
import io.distillery.model.config.LlamaTensorNames;
import io.distillery.model.llama.LlamaModel;
import io.distillery.model.quant.CompressedTensors;
import io.distillery.model.quant.GroupQuantizer;
import io.distillery.model.quant.QuantizationScheme;
import io.distillery.model.quant.QuantizedWeight;
import io.distillery.model.safetensors.DType;
import io.distillery.model.tasks.TaskJsonl;
import io.distillery.model.tokenizer.ByteTokenizer;
import io.distillery.stage.StageContext;
import io.distillery.stage.StageException;
import io.distillery.stage.StageResult;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.UUID;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The evaluator's streamed mode (one teacher-forced pass, one decoder layer at a time) against its
 * whole-model mode (generation, models loaded whole): the same exact match, perplexity and
 * agreement, on the trained tiny teacher and its candidates and on a 2-layer model of real width
 * whose whole-model evaluation does not fit the budget.
 */
class StreamedEvaluationTest {

  @TempDir static Path dir;

  static Path reference;
  static Path q8;
  static Path mild;
  static Path noisy;
  static final ObjectMapper JSON = new ObjectMapper();
  static String lastHtml;

  @BeforeAll
  static void makeModels() throws IOException {
    try (LlamaModel teacher = LlamaModel.load(TinyTeacher.checkpoint())) {
      reference = TinyTeacher.save(teacher, dir.resolve("reference"));
      TaskJsonl.write(reference.resolve(EvalData.TEST_FILE), TinyTeacher.EXAMPLES);
      q8 = TinyTeacher.saveInt8(teacher, dir.resolve("q8"));
    }
    mild = TinyTeacher.saveDamaged(reference, dir.resolve("mild"), 0.12);
    noisy = TinyTeacher.saveDamaged(reference, dir.resolve("noisy"), 0.5);
  }

  static StageContext<EvaluatorParams> context(
      Path model,
      EvaluatorParams params,
      List<StageContext.Input> inputs,
      long budget,
      List<String> messages)
      throws IOException {
    Path scratch = Files.createDirectories(dir.resolve("scratch-" + UUID.randomUUID()));
    Path work = Files.createDirectories(dir.resolve("work-" + UUID.randomUUID()));
    List<Double> percents = new ArrayList<>();
    return new StageContext<>(
        null,
        params,
        model,
        inputs,
        scratch,
        work,
        (percent, message, metrics) -> {
          assertThat(percent)
              .as("progress only goes forward: " + message)
              .isGreaterThanOrEqualTo(percents.isEmpty() ? 0 : percents.getLast());
          percents.add(percent);
          messages.add(message);
        },
        budget);
  }

  static EvaluatorParams params(String streamed, Map<String, Double> gates) {
    return new EvaluatorParams(null, null, null, gates, "best-quality", 1, 2, 5, streamed);
  }

  static JsonNode run(
      Path model,
      List<StageContext.Input> inputs,
      String streamed,
      long budget,
      Map<String, Double> gates,
      List<String> messages)
      throws Exception {
    StageResult result =
        new EvaluatorStage().run(context(model, params(streamed, gates), inputs, budget, messages));
    lastHtml = Files.readString(result.outputs().get(1).path().resolve(EvaluationReport.HTML_FILE));
    assertThat(result.metrics())
        .containsEntry("streamed", streamed.equals("true") || budget < 1L << 30 ? 1.0 : 0.0);
    return JSON.readTree(
        result.outputs().get(1).path().resolve(EvaluationReport.JSON_FILE).toFile());
  }

  static Map<String, JsonNode> byName(JsonNode report) {
    Map<String, JsonNode> out = new HashMap<>();
    out.put("reference", report.path("reference"));
    report.path("candidates").forEach(c -> out.put(c.path("name").asText(), c));
    return out;
  }

  /**
   * Exact match and agreement equal; perplexity equal to 1e-5 in log space (mean NLL); KL to 1e-4
   * relative (the whole-model path sums it over the vocabulary in float).
   */
  static void assertSameQuality(JsonNode streamed, JsonNode whole) {
    Map<String, JsonNode> s = byName(streamed);
    Map<String, JsonNode> w = byName(whole);
    assertThat(s.keySet()).isEqualTo(w.keySet());
    for (String name : w.keySet()) {
      assertThat(s.get(name).path("exactMatch").asDouble())
          .as(name + " exact match")
          .isEqualTo(w.get(name).path("exactMatch").asDouble());
      assertThat(Math.log(s.get(name).path("perplexity").asDouble()))
          .as(name + " log perplexity")
          .isCloseTo(Math.log(w.get(name).path("perplexity").asDouble()), within(1e-5));
      assertThat(s.get(name).path("agreement").asDouble())
          .as(name + " agreement")
          .isEqualTo(w.get(name).path("agreement").asDouble());
      assertThat(s.get(name).path("answerTokens").asLong())
          .isEqualTo(w.get(name).path("answerTokens").asLong());
      assertThat(s.get(name).path("parameters").asLong())
          .isEqualTo(w.get(name).path("parameters").asLong());
      assertThat(s.get(name).path("weightBytes").asLong())
          .isEqualTo(w.get(name).path("weightBytes").asLong());
      assertThat(s.get(name).path("decodeP99Ms").isNull()).as("no latency when streamed").isTrue();
      double kl = w.get(name).path("klDivergence").asDouble();
      assertThat(s.get(name).path("klDivergence").asDouble())
          .as(name + " KL")
          .isCloseTo(kl, within(1e-4 * Math.max(1, kl)));
      assertThat(w.get(name).path("decodeP99Ms").asDouble()).isPositive();
    }
  }

  @Test
  void streamedExactMatchPerplexityAndAgreementEqualTheWholeModelPathsOnTheTinyTeacher()
      throws Exception {
    List<StageContext.Input> inputs =
        List.of(
            EvaluatorStageTest.node("q8", q8, "compressed-tensors"),
            EvaluatorStageTest.node("mild", mild, "hf-llama"),
            EvaluatorStageTest.node("noisy", noisy, "hf-llama"));
    List<String> messages = new ArrayList<>();
    JsonNode whole = run(reference, inputs, "false", 8L << 30, Map.of(), messages);
    JsonNode streamed =
        run(
            reference,
            inputs,
            "true",
            8L << 30,
            Map.of("exactMatch", 0.5, "klDivergence", 0.5),
            messages);

    assertSameQuality(streamed, whole);
    Map<String, JsonNode> s = byName(streamed);
    assertThat(s.get("reference").path("exactMatch").asDouble()).isEqualTo(1.0);
    assertThat(s.get("noisy").path("exactMatch").asDouble()).isEqualTo(0.0);
    assertThat(s.get("mild").path("exactMatch").asDouble())
        .as("the mild damage loses some answers, not all")
        .isStrictlyBetween(0.0, 1.0);
    assertThat(whole.path("mode").asText()).isEqualTo(EvaluationReport.WHOLE_MODEL);
    assertThat(streamed.path("mode").asText()).isEqualTo(EvaluationReport.STREAMED);
    assertThat(streamed.path("note").asText())
        .startsWith("latency not measured: streamed: true was set");
    assertThat(streamed.path("chosen").asText()).isEqualTo("q8");
    assertThat(s.get("noisy").path("klDivergence").asDouble()).isGreaterThan(1.0);
    assertThat(s.get("mild").path("passed").asBoolean())
        .as(
            "mild: exact match %s, KL %s",
            s.get("mild").path("exactMatch"), s.get("mild").path("klDivergence"))
        .isEqualTo(
            s.get("mild").path("exactMatch").asDouble() >= 0.5
                && s.get("mild").path("klDivergence").asDouble() <= 0.5);
    assertThat(messages).anyMatch(m -> m.startsWith("candidate q8: layer 1/1"));
  }

  @Test
  void streamedMisfireExactMatchOfCandidateAndBaselineEqualTheWholeModelPaths() throws Exception {
    Path misfires = Files.createDirectories(dir.resolve("misfires"));
    StringBuilder rows = new StringBuilder();
    for (char c = 'a'; c <= 'l'; c++) {
      rows.append("{\"prompt\":\"c:")
          .append(c)
          .append("=\",\"output\":\"x\",\"expected\":\"")
          .append(c)
          .append("\",\"reason\":\"WRONG_ANSWER\",\"deploymentId\":\"d\",\"split\":\"heldout\"}\n");
    }
    Files.writeString(misfires.resolve(EvalData.MISFIRES_FILE), rows);
    StageContext.Input run =
        new StageContext.Input(
            "$run",
            "input",
            List.of(
                EvaluatorStageTest.artefact(misfires, "misfires-jsonl"),
                EvaluatorStageTest.artefact(mild, "hf-checkpoint")),
            Map.of());
    List<StageContext.Input> inputs =
        List.of(run, EvaluatorStageTest.node("q8", q8, "compressed-tensors"));
    JsonNode whole =
        run(
            reference,
            inputs,
            "false",
            8L << 30,
            Map.of("misfireImprovement", 0.0),
            new ArrayList<>());
    JsonNode streamed =
        run(
            reference,
            inputs,
            "true",
            8L << 30,
            Map.of("misfireImprovement", 0.0),
            new ArrayList<>());
    assertThat(streamed.path("misfires").asInt()).isEqualTo(12);
    assertThat(streamed.path("baseline").path("misfireExactMatch").asDouble())
        .as("the mild baseline")
        .isEqualTo(whole.path("baseline").path("misfireExactMatch").asDouble())
        .isStrictlyBetween(0.0, 1.0);
    assertThat(byName(streamed).get("q8").path("misfireExactMatch").asDouble())
        .isEqualTo(byName(whole).get("q8").path("misfireExactMatch").asDouble())
        .isEqualTo(1.0);
    assertSameQuality(streamed, whole);
  }

  @Test
  void streamedRefusesLatencyGatesNamingThem() {
    List<StageContext.Input> inputs =
        List.of(EvaluatorStageTest.node("q8", q8, "compressed-tensors"));
    assertThatThrownBy(
            () ->
                run(
                    reference,
                    inputs,
                    "true",
                    8L << 30,
                    Map.of(
                        "p99Ms",
                        50.0,
                        "tokensPerSecond",
                        1.0,
                        "klDivergence",
                        0.1,
                        "exactMatch",
                        0.5),
                    new ArrayList<>()))
        .isInstanceOf(StageException.Fatal.class)
        .hasMessageContaining(
            "gate(s) p99Ms, tokensPerSecond cannot be checked: latency not measured")
        .hasMessageContaining("Remove those gates");
  }

  @Test
  void shouldRefuseBeforeAnyWorkWhenEvenTheStreamedPassCannotFit() {
    List<StageContext.Input> inputs =
        List.of(EvaluatorStageTest.node("q8", q8, "compressed-tensors"));
    List<String> messages = new ArrayList<>();
    assertThatThrownBy(() -> run(reference, inputs, "auto", 100L << 20, Map.of(), messages))
        .isInstanceOf(StageException.Fatal.class)
        .hasMessageContaining("the streamed evaluation needs 472.5 MB, this worker has 104.9 MB")
        .hasMessageContaining("raise DISTILLERY_WORKER_MEMORY");
    assertThat(messages).isEmpty();
    assertThatThrownBy(() -> run(reference, inputs, "false", 100L << 20, Map.of(), messages))
        .isInstanceOf(StageException.Fatal.class)
        .hasMessageContaining("the whole-model evaluation (streamed: false) needs");
  }

  @Test
  void aRealWidthModelOverTheBudgetIsStreamedWithTheWholeModelPathsExactMatchAndPerplexity()
      throws Exception {
    LlamaConfig config =
        LlamaConfig.builder()
            .vocabSize(32000)
            .hiddenSize(512)
            .intermediateSize(2048)
            .numHiddenLayers(2)
            .numAttentionHeads(8)
            .numKeyValueHeads(4)
            .maxPositionEmbeddings(128)
            .rmsNormEps(1e-5)
            .bosTokenId(ByteTokenizer.BOS_ID)
            .eosTokenIds(List.of(ByteTokenizer.EOS_ID))
            .build();
    Path wide = dir.resolve("wide");
    Path wideQ8 = dir.resolve("wide-q8");
    try (LlamaModel random = LlamaModel.random(config, 21)) {
      // the byte tokenizer decodes ids < 259 only: the head rows above are zero, so greedy decoding
      // (whose max over
      // 259 random logits is positive) stays among bytes while every chunk of the 32000-row head is
      // still scored
      float[] head = random.linearWeight(LlamaTensorNames.LM_HEAD_MODULE);
      Arrays.fill(head, ByteTokenizer.VOCAB_SIZE * config.hiddenSize(), head.length, 0f);
      random.replaceLinearWeight(LlamaTensorNames.LM_HEAD_MODULE, head);
      random.save(wide, DType.BF16);
    }
    ByteTokenizer.instance().save(wide);
    TaskJsonl.write(wide.resolve(EvalData.TEST_FILE), TinyTeacher.EXAMPLES.subList(0, 8));
    try (LlamaModel bf16 = LlamaModel.load(wide)) {
      Map<String, float[]> dense = new LinkedHashMap<>();
      bf16.parameters().forEach((name, a) -> dense.put(name, a.toFloatArray()));
      Map<String, QuantizedWeight> quantized = new LinkedHashMap<>();
      for (String module : LlamaTensorNames.linearModules(config)) {
        if (!module.equals(LlamaTensorNames.LM_HEAD_MODULE)) {
          long[] shape = LlamaTensorNames.shapes(config).get(LlamaTensorNames.weight(module));
          quantized.put(
              module,
              GroupQuantizer.int8PerChannel(
                  dense.get(LlamaTensorNames.weight(module)), (int) shape[0], (int) shape[1]));
        }
      }
      CompressedTensors.write(
          wideQ8,
          config,
          dense,
          quantized,
          Map.of(),
          new QuantizationScheme(
              QuantizedWeight.Kind.INT8_CHANNEL,
              0,
              false,
              List.of(LlamaTensorNames.LM_HEAD_MODULE)));
    }
    ByteTokenizer.instance().save(wideQ8);
    List<StageContext.Input> inputs =
        List.of(EvaluatorStageTest.node("q8", wideQ8, "compressed-tensors"));
    List<String> messages = new ArrayList<>();
    // whole-model need: 0.45 GB runtime + 2 x 0.16 GB (reference, candidate dequantized twice) +
    // logits; streamed:
    // the runtime + one layer + the head's chunk, about 0.53 GB
    long budget = 700L << 20;
    JsonNode whole = run(wide, inputs, "auto", 8L << 30, Map.of(), messages);
    JsonNode streamed =
        run(
            wide,
            inputs,
            "auto",
            budget,
            Map.of("retention", 0.0, "perplexityRatio", 2.0),
            messages);

    assertSameQuality(streamed, whole);
    assertThat(streamed.path("mode").asText()).isEqualTo(EvaluationReport.STREAMED);
    assertThat(streamed.path("note").asText()).startsWith(EvaluatorStage.NOT_FITTING);
    assertThat(whole.path("mode").asText()).isEqualTo(EvaluationReport.WHOLE_MODEL);
    assertThat(whole.path("note").isNull()).isTrue();
    assertThat(byName(streamed).get("q8").path("perplexity").asDouble()).isGreaterThan(1000);
    assertThat(streamed.path("chosen").asText()).isEqualTo("q8");
    assertThat(lastHtml).contains("streamed evaluation</b>: " + EvaluatorStage.NOT_FITTING);
  }
}
