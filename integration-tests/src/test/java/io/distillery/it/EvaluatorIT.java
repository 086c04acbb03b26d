package io.distillery.it;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.distillery.model.llama.LlamaModel;
import io.distillery.model.safetensors.DType;
import io.distillery.model.tasks.TaskExample;
import io.distillery.model.tasks.TaskJsonl;
import io.distillery.model.tokenizer.ByteTokenizer;
import io.distillery.schemas.common.ArtefactRef;
import io.distillery.schemas.run.RunState;
import io.distillery.schemas.run.RunStatus;
import io.distillery.schemas.run.StageState;
import io.distillery.schemas.run.StageStatus;
import java.net.URI;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * The evaluator on the real broker: two candidates made by the real quantizer (w8-rtn, harmless)
 * and pruner (90% magnitude sparsity, damaging) fan into the evaluator, which gates them against
 * the registered model and passes the good one on; with an impossible run-level gate the run ends
 * REJECTED with each candidate's failed gates.
 */
class EvaluatorIT {

  static Cluster.Services services;
  static Path model;
  static final ObjectMapper JSON = new ObjectMapper();

  static final String RECIPE =
      """
      name: evaluate-two
      timeout: 5m
      stages:
        w8:     { stage: quantizer, params: { scheme: w8-rtn } }
        sparse: { stage: pruner, params: { method: magnitude, sparsity: 0.9 } }
        eval:   { stage: evaluator, after: [w8, sparse], params: { %s latencyRuns: 2, decodeTokens: 4 } }
      """;

  @BeforeAll
  static void start() throws Exception {
    services = Cluster.services(true, "evaluate", "quantizer", "pruner", "evaluator");
    model = Cluster.newDir("copy-teacher");
    List<TaskExample> examples = new ArrayList<>();
    for (char c = 'a'; c <= 'z'; c++) {
      examples.add(new TaskExample("copy", "c:" + c + "=", String.valueOf(c)));
    }
    try (LlamaModel teacher = TinyCopyTeacher.memorise(examples)) {
      teacher.save(model, DType.F32);
    }
    ByteTokenizer.instance().save(model);
    TaskJsonl.write(model.resolve("test.jsonl"), examples); // the evaluator's default eval data
  }

  @AfterAll
  static void stop() {
    services.close();
  }

  static StageState stage(RunState r, String node) {
    return r.getStages().stream().filter(s -> s.getNode().equals(node)).findFirst().orElseThrow();
  }

  static String register(String recipe, String... extra) throws Exception {
    List<String> args =
        new ArrayList<>(
            List.of(
                "register",
                "--model",
                model.toString(),
                "--recipe",
                Cluster.recipe(recipe).toString()));
    args.addAll(List.of(extra));
    var reg = Cluster.cli(args.toArray(String[]::new));
    assertThat(reg.code()).as(reg.err()).isZero();
    return reg.out().trim();
  }

  @Test
  void shouldPassTheQuantizedCandidateOnAndReportBothWhenThePrunedOneFailsTheGate()
      throws Exception {
    String runId = register(RECIPE.formatted("gates: { retention: 0.9, agreement: 0.8 },"));
    RunState done =
        Cluster.awaitRun(runId, r -> r.getStatus() != RunStatus.RUNNING, Duration.ofMinutes(5));
    assertThat(done.getStatus())
        .as(String.valueOf(done.getReason()))
        .isEqualTo(RunStatus.SUCCEEDED);

    StageState eval = stage(done, "eval");
    ArtefactRef w8 = stage(done, "w8").getOutputs().getFirst();
    assertThat(eval.getOutputs()).hasSize(2);
    ArtefactRef chosen = eval.getOutputs().getFirst();
    assertThat(chosen.getUri()).isEqualTo(w8.getUri());
    assertThat(chosen.getSha256()).isEqualTo(w8.getSha256());
    assertThat(chosen.getFormat()).isEqualTo("compressed-tensors");
    assertThat(eval.getMetrics().get("retention")).isGreaterThanOrEqualTo(0.9);
    assertThat(eval.getMetrics()).containsEntry("candidates", 2.0).containsEntry("passing", 1.0);

    ArtefactRef reportRef = eval.getOutputs().get(1);
    assertThat(reportRef.getFormat()).isEqualTo("eval-report");
    Path report = Path.of(URI.create(reportRef.getUri()));
    JsonNode json = JSON.readTree(report.resolve("report.json").toFile());
    assertThat(json.path("chosen").asText()).isEqualTo("w8");
    assertThat(json.path("runId").asText()).isEqualTo(runId);
    List<String> failedSparse = new ArrayList<>();
    for (JsonNode c : json.path("candidates")) {
      if (c.path("name").asText().equals("sparse")) {
        assertThat(c.path("passed").asBoolean()).isFalse();
        c.path("gates")
            .forEach(
                g -> {
                  if (!g.path("passed").asBoolean()) {
                    failedSparse.add(g.path("gate").asText());
                  }
                });
      } else {
        assertThat(c.path("name").asText()).isEqualTo("w8");
        assertThat(c.path("passed").asBoolean()).isTrue();
      }
    }
    assertThat(failedSparse).isNotEmpty();
    assertThat(Files.readString(report.resolve("report.html")))
        .contains("<svg", ">w8<", ">sparse<");
  }

  @Test
  void shouldRejectTheRunWithTheReasonsWhenNoCandidateCanPassTheGate() throws Exception {
    String runId = register(RECIPE.formatted(""), "--gate", "retention=1.5");
    RunState done =
        Cluster.awaitRun(runId, r -> r.getStatus() != RunStatus.RUNNING, Duration.ofMinutes(5));
    assertThat(done.getStatus()).isEqualTo(RunStatus.REJECTED);
    assertThat(stage(done, "eval").getStatus()).isEqualTo(StageStatus.REJECTED);
    assertThat(done.getVerdict())
        .startsWith("REJECTED: no candidate passed the gates")
        .contains("w8 failed retention")
        .contains("< 1.5")
        .contains("sparse failed retention")
        .contains("report.html");
    assertThat(done.getReason()).contains("no candidate passed the gates");
  }
}
