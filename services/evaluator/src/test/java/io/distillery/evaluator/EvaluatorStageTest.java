package io.distillery.evaluator;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.distillery.evaluator.measure.EvalData;
import io.distillery.evaluator.report.EvaluationReport;
import io.distillery.model.llama.LlamaModel;
import io.distillery.model.tasks.TaskJsonl;
import io.distillery.schemas.common.ArtefactRef;
import io.distillery.schemas.job.StageJob;
import io.distillery.stage.StageContext;
import io.distillery.stage.StageException;
import io.distillery.stage.StageResult;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.UUID;
import java.util.stream.Stream;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class EvaluatorStageTest {

  @TempDir static Path dir;

  static Path reference;
  static Path copy;
  static Path q8;
  static Path noisy;
  static final ObjectMapper JSON = new ObjectMapper();

  @BeforeAll
  static void makeModels() throws IOException {
    try (LlamaModel teacher = LlamaModel.load(TinyTeacher.checkpoint())) {
      reference = TinyTeacher.save(teacher, dir.resolve("reference"));
      // the teacher trainer leaves its held-out prompts here; the evaluator uses them when no
      // dataset is given
      TaskJsonl.write(reference.resolve(EvalData.TEST_FILE), TinyTeacher.EXAMPLES);
      copy = TinyTeacher.save(teacher, dir.resolve("copy"));
      q8 = TinyTeacher.saveInt8(teacher, dir.resolve("q8"));
    }
    noisy = TinyTeacher.saveDamaged(reference, dir.resolve("noisy"), 0.5);
  }

  static StageContext.Artefact artefact(Path path, String format) {
    return new StageContext.Artefact(
        ArtefactRef.newBuilder()
            .setUri(path.toUri().toString())
            .setSha256("sha-" + path.getFileName())
            .setBytes(1L)
            .setFormat(format)
            .build(),
        path);
  }

  static StageContext.Input node(String name, Path path, String format) {
    return new StageContext.Input(name, "test", List.of(artefact(path, format)), Map.of());
  }

  static List<StageContext.Input> three() {
    return List.of(
        node("copy", copy, "hf-llama"),
        node("q8", q8, "compressed-tensors"),
        node("noisy", noisy, "hf-llama"));
  }

  static EvaluatorParams params(Map<String, Double> gates, String pick) {
    return new EvaluatorParams(null, null, null, gates, pick, 2, 4, null);
  }

  static StageJob job(Map<String, Double> gates) {
    ArtefactRef model =
        ArtefactRef.newBuilder()
            .setUri(reference.toUri().toString())
            .setSha256("ref")
            .setBytes(1L)
            .setFormat("hf-llama")
            .build();
    return StageJob.newBuilder()
        .setRunId("run-1")
        .setJobId("run-1/eval")
        .setAttempt(1)
        .setStage("evaluator")
        .setNode("eval")
        .setParams("{}")
        .setModel(model)
        .setInputs(List.of())
        .setGates(Map.copyOf(gates))
        .setLabels(Map.of())
        .setTimeoutMs(60_000)
        .setDispatchedAt(Instant.now())
        .build();
  }

  static StageContext<EvaluatorParams> context(
      StageJob job, EvaluatorParams params, List<StageContext.Input> inputs, List<Double> progress)
      throws IOException {
    Path scratch = Files.createDirectories(dir.resolve("scratch-" + UUID.randomUUID()));
    Path work = Files.createDirectories(dir.resolve("work-" + UUID.randomUUID()));
    return new StageContext<>(
        job,
        params,
        reference,
        inputs,
        scratch,
        work,
        (percent, message, metrics) -> progress.add(percent));
  }

  @Test
  void shouldPickTheSmallestPassingCandidateAndReportAllOfThem() throws Exception {
    List<Double> progress = new ArrayList<>();
    StageContext<EvaluatorParams> ctx =
        context(null, params(Map.of("retention", 0.9, "agreement", 0.8), null), three(), progress);

    StageResult result = new EvaluatorStage().run(ctx);

    assertThat(result.outputs()).hasSize(2);
    StageResult.Output chosen = result.outputs().getFirst();
    assertThat(chosen.format()).isEqualTo("compressed-tensors");
    assertThat(listing(chosen.path())).isEqualTo(listing(q8));
    assertThat(Files.readAllBytes(chosen.path().resolve("model.safetensors")))
        .isEqualTo(Files.readAllBytes(q8.resolve("model.safetensors")));
    assertThat(Files.exists(q8.resolve("model.safetensors")))
        .as("the candidate itself is untouched")
        .isTrue();

    StageResult.Output reportOut = result.outputs().get(1);
    assertThat(reportOut.format()).isEqualTo(EvaluationReport.FORMAT);
    JsonNode report = JSON.readTree(reportOut.path().resolve(EvaluationReport.JSON_FILE).toFile());
    assertThat(report.path("chosen").asText()).isEqualTo("q8");
    assertThat(report.path("pick").asText()).isEqualTo("smallest-passing");
    assertThat(report.path("retentionBasis").asText()).isEqualTo("exactMatch");
    assertThat(report.path("dataSource").asText()).endsWith(EvalData.TEST_FILE);
    assertThat(report.path("reference").path("exactMatch").asDouble()).isGreaterThanOrEqualTo(0.9);
    Map<String, JsonNode> byName = new java.util.HashMap<>();
    report.path("candidates").forEach(c -> byName.put(c.path("name").asText(), c));
    assertThat(byName).containsOnlyKeys("copy", "q8", "noisy");
    assertThat(byName.get("copy").path("passed").asBoolean()).isTrue();
    assertThat(byName.get("copy").path("values").path("retention").asDouble()).isEqualTo(1.0);
    assertThat(byName.get("copy").path("agreement").asDouble()).isEqualTo(1.0);
    assertThat(byName.get("q8").path("passed").asBoolean()).isTrue();
    assertThat(byName.get("q8").path("weightBytes").asLong())
        .isLessThan(byName.get("copy").path("weightBytes").asLong());
    JsonNode bad = byName.get("noisy");
    assertThat(bad.path("passed").asBoolean()).isFalse();
    assertThat(bad.path("values").path("retention").asDouble()).isLessThan(0.9);
    assertThat(bad.path("gates").findValuesAsText("reason"))
        .anyMatch(r -> r.startsWith("retention ") && r.contains(" < 0.9"));
    for (JsonNode c : byName.values()) {
      assertThat(c.path("decodeP99Ms").asDouble()).isPositive();
      assertThat(c.path("prefillP50Ms").asDouble()).isPositive();
      assertThat(c.path("parameters").asLong())
          .isEqualTo(byName.get("copy").path("parameters").asLong());
    }

    String html = Files.readString(reportOut.path().resolve(EvaluationReport.HTML_FILE));
    assertThat(html)
        .contains("<svg", "<table", ">copy<", ">q8<", ">noisy<", "retention &gt;= 0.9")
        .doesNotContain("<script", "<link", "src=");

    assertThat(result.metrics())
        .containsEntry("candidates", 3.0)
        .containsEntry("passing", 2.0)
        .containsEntry("retentionFromPerplexity", 0.0);
    assertThat(result.metrics().get("retention")).isGreaterThanOrEqualTo(0.9);
    assertThat(result.metrics().get("weightBytes"))
        .isEqualTo(byName.get("q8").path("weightBytes").asDouble());
    assertThat(progress).isSorted().last().isEqualTo(100.0);
    assertThat(progress).hasSizeGreaterThanOrEqualTo(4);
  }

  @Test
  void shouldPickTheBestQualityWhenAsked() throws Exception {
    StageResult result =
        new EvaluatorStage()
            .run(
                context(
                    null,
                    params(Map.of("retention", 0.9), "best-quality"),
                    List.of(node("noisy", noisy, "hf-llama"), node("copy", copy, "hf-llama")),
                    new ArrayList<>()));
    assertThat(listing(result.outputs().getFirst().path())).isEqualTo(listing(copy));
    assertThat(result.metrics()).containsEntry("retention", 1.0).containsEntry("agreement", 1.0);
  }

  @Test
  void shouldRejectTheRunWithEveryCandidatesFailedGatesWhenNothingPasses() throws Exception {
    // the run's gates (from ModelRegistered, on the StageJob) apply when the params set none
    StageContext<EvaluatorParams> ctx =
        context(
            job(Map.of("retention", 2.0)),
            params(Map.of(), null),
            List.of(node("copy", copy, "hf-llama"), node("noisy", noisy, "hf-llama")),
            new ArrayList<>());
    assertThatThrownBy(() -> new EvaluatorStage().run(ctx))
        .isInstanceOf(StageException.Rejected.class)
        .hasMessageContaining("no candidate passed the gates")
        .hasMessageContaining("copy failed retention 1 < 2")
        .hasMessageContaining("noisy failed retention")
        .hasMessageContaining(EvaluationReport.HTML_FILE);
    Path kept = ctx.workDir().resolve(EvaluatorStage.REPORT_DIR);
    JsonNode report = JSON.readTree(kept.resolve(EvaluationReport.JSON_FILE).toFile());
    assertThat(report.path("chosen").isNull()).isTrue();
    assertThat(report.path("candidates")).hasSize(2);
    assertThat(Files.readString(kept.resolve(EvaluationReport.HTML_FILE)))
        .contains("nothing passed the gates");
  }

  @Test
  void shouldMeasureHeldOutMisfiresAgainstTheDeployedBaseline() throws Exception {
    Path misfires = Files.createDirectories(dir.resolve("misfires"));
    Files.writeString(
        misfires.resolve(EvalData.MISFIRES_FILE),
        """
        {"prompt":"c:a=","output":"x","expected":"a","reason":"WRONG_ANSWER","deploymentId":"d","split":"heldout"}
        {"prompt":"c:b=","output":"x","expected":"b","reason":"WRONG_ANSWER","deploymentId":"d","split":"heldout"}
        {"prompt":"c:c=","output":"x","expected":"c","reason":"WRONG_ANSWER","deploymentId":"d","split":"heldout"}
        {"prompt":"c:d=","output":"x","expected":"d","reason":"WRONG_ANSWER","deploymentId":"d","split":"train"}
        {"prompt":"c:e=","output":"x","expected":null,"reason":"ESCALATED","deploymentId":"d","split":"heldout"}
        """);
    StageContext.Input run =
        new StageContext.Input(
            "$run",
            "input",
            List.of(artefact(misfires, "misfires-jsonl"), artefact(noisy, "hf-checkpoint")),
            Map.of());
    StageResult result =
        new EvaluatorStage()
            .run(
                context(
                    null,
                    params(Map.of("misfireImprovement", 0.5), null),
                    List.of(run, node("copy", copy, "hf-llama")),
                    new ArrayList<>()));
    assertThat(result.metrics().get("misfireExactMatch")).isEqualTo(1.0);
    assertThat(result.metrics().get("misfireImprovement")).isGreaterThanOrEqualTo(0.5);
    JsonNode report =
        JSON.readTree(result.outputs().get(1).path().resolve(EvaluationReport.JSON_FILE).toFile());
    assertThat(report.path("misfires").asInt())
        .as("held-out rows with an expected answer")
        .isEqualTo(3);
    assertThat(report.path("baseline").path("misfireExactMatch").asDouble())
        .isEqualTo(1.0 - result.metrics().get("misfireImprovement"));
  }

  @Test
  void shouldFailFatallyNamingTheProblemWhenInputIsBad() throws Exception {
    List<Double> p = new ArrayList<>();
    EvaluatorParams ok = params(Map.of(), null);
    StageContext.Input runOnly =
        new StageContext.Input("$run", "input", List.of(artefact(copy, "hf-checkpoint")), Map.of());
    assertThatThrownBy(() -> new EvaluatorStage().run(context(null, ok, List.of(runOnly), p)))
        .isInstanceOf(StageException.Fatal.class)
        .hasMessageContaining("no candidate checkpoint");

    Path broken = Files.createDirectories(dir.resolve("broken"));
    Files.writeString(broken.resolve("config.json"), "{\"model_type\": \"llama\"");
    assertThatThrownBy(
            () ->
                new EvaluatorStage()
                    .run(context(null, ok, List.of(node("bad-node", broken, "hf-llama")), p)))
        .isInstanceOf(StageException.Fatal.class)
        .hasMessageContaining("candidate bad-node")
        .hasMessageContaining(broken.toString());

    assertThatThrownBy(
            () -> new EvaluatorStage().run(context(job(Map.of("accuracy", 0.9)), ok, three(), p)))
        .isInstanceOf(StageException.Fatal.class)
        .hasMessageContaining("unknown gate 'accuracy'")
        .hasMessageContaining("retention (>=)");

    assertThatThrownBy(
            () ->
                new EvaluatorStage()
                    .run(
                        context(null, params(Map.of("misfireImprovement", 0.0), null), three(), p)))
        .isInstanceOf(StageException.Fatal.class)
        .hasMessageContaining("misfires-jsonl");

    EvaluatorParams missing =
        new EvaluatorParams(
            dir.resolve("nope.jsonl").toString(), null, null, null, null, 1, 1, null);
    assertThatThrownBy(() -> new EvaluatorStage().run(context(null, missing, three(), p)))
        .isInstanceOf(StageException.Fatal.class)
        .hasMessageContaining("nope.jsonl");
  }

  static List<String> listing(Path root) throws IOException {
    try (Stream<Path> files = Files.walk(root)) {
      return files
          .filter(Files::isRegularFile)
          .map(f -> root.relativize(f) + ":" + f.toFile().length())
          .sorted()
          .toList();
    }
  }
}
