package io.distillery.cli;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.distillery.runtime.artefact.FileArtefactStore;
import io.distillery.schemas.common.ArtefactRef;
import io.distillery.schemas.run.RunState;
import io.distillery.schemas.run.RunStatus;
import io.distillery.schemas.run.StageState;
import io.distillery.schemas.run.StageStatus;
import java.io.FileNotFoundException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Instant;
import java.util.List;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The runs page serves eval-report files a run names, from the store, and nothing else. */
class EvaluationReportsTest {

  @TempDir Path tmp;
  Path storeRoot;
  ArtefactRef report;
  ArtefactRef checkpoint;
  EvaluationReports reports;

  @BeforeEach
  void setUp() throws Exception {
    storeRoot = tmp.resolve("store");
    FileArtefactStore store = new FileArtefactStore(storeRoot);
    Path dir = Files.createDirectories(tmp.resolve("eval-report"));
    Files.writeString(dir.resolve("report.json"), "{\"chosen\":\"w8\"}");
    Files.writeString(dir.resolve("report.html"), "<html></html>");
    Files.writeString(tmp.resolve("secret.txt"), "outside the store");
    report = store.put(dir, "eval-report", true);
    Path ckpt = Files.createDirectories(tmp.resolve("ckpt"));
    Files.writeString(ckpt.resolve("config.json"), "{}");
    checkpoint = store.put(ckpt, "hf-safetensors", true);
    reports = new EvaluationReports(storeRoot);
    reports.remember(run(report, checkpoint));
  }

  static RunState run(ArtefactRef... outputs) {
    StageState eval =
        StageState.newBuilder()
            .setNode("eval")
            .setStage("evaluator")
            .setStatus(StageStatus.COMPLETED)
            .setOutputs(List.of(outputs))
            .build();
    return RunState.newBuilder()
        .setRunId("r1")
        .setModelId("m")
        .setModel(outputs[0])
        .setRecipeName("x")
        .setRecipe("{}")
        .setStatus(RunStatus.SUCCEEDED)
        .setStages(List.of(eval))
        .setCreatedAt(Instant.EPOCH)
        .setUpdatedAt(Instant.EPOCH)
        .build();
  }

  @Test
  void shouldServeTheFilesOfAnEvalReportARunNames() throws Exception {
    Path json = reports.file(report.getSha256(), "report.json");
    assertThat(json).hasContent("{\"chosen\":\"w8\"}");
    assertThat(json.startsWith(storeRoot.toRealPath())).isTrue();
    assertThat(EvaluationReports.contentType(json)).isEqualTo("application/json");
    assertThat(EvaluationReports.contentType(reports.file(report.getSha256(), "report.html")))
        .startsWith("text/html");
  }

  @Test
  void shouldRefuseArtefactsOfAnotherFormatUnknownShasAndPathsOut() {
    assertThatThrownBy(() -> reports.file(checkpoint.getSha256(), "config.json"))
        .isInstanceOf(FileNotFoundException.class)
        .hasMessageContaining("no run names an eval-report");
    assertThatThrownBy(() -> reports.file("f".repeat(64), "report.json"))
        .isInstanceOf(FileNotFoundException.class);
    assertThatThrownBy(() -> reports.file(report.getSha256(), ".."))
        .isInstanceOf(FileNotFoundException.class)
        .hasMessageContaining("not a file name");
    assertThatThrownBy(() -> reports.file(report.getSha256(), "..%2Fsecret.txt"))
        .isInstanceOf(FileNotFoundException.class);
    assertThatThrownBy(() -> reports.file("../../secret", "report.json"))
        .isInstanceOf(FileNotFoundException.class)
        .hasMessageContaining("not a sha256");
    assertThatThrownBy(() -> reports.file(report.getSha256(), "missing.json"))
        .isInstanceOf(FileNotFoundException.class)
        .hasMessageContaining("has no file missing.json");
  }

  @Test
  void shouldRefuseASymlinkInsideTheReportThatLeadsOutOfTheStore() throws Exception {
    Path dir = Path.of(java.net.URI.create(report.getUri()));
    Files.createSymbolicLink(dir.resolve("leak.txt"), tmp.resolve("secret.txt"));
    assertThatThrownBy(() -> reports.file(report.getSha256(), "leak.txt"))
        .isInstanceOf(FileNotFoundException.class);
  }

  @Test
  void shouldServeNothingWithoutAStore() throws Exception {
    EvaluationReports none = new EvaluationReports(null);
    none.remember(run(report));
    assertThatThrownBy(() -> none.file(report.getSha256(), "report.json"))
        .isInstanceOf(FileNotFoundException.class)
        .hasMessageContaining("no artefact store");
  }
}
