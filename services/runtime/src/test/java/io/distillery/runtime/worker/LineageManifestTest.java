package io.distillery.runtime.worker;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.distillery.schemas.common.ArtefactRef;
import io.distillery.schemas.job.StageInput;
import io.distillery.schemas.job.StageJob;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Instant;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class LineageManifestTest {

  @TempDir Path dir;

  private static ArtefactRef ref(String name, String format) {
    return ArtefactRef.newBuilder()
        .setUri("file:///store/" + name)
        .setSha256(name.repeat(64).substring(0, 64))
        .setBytes(42)
        .setFormat(format)
        .build();
  }

  private static StageJob job() {
    return StageJob.newBuilder()
        .setRunId("run-1")
        .setJobId("run-1/q4")
        .setAttempt(2)
        .setStage("quantizer")
        .setNode("q4")
        .setParams("{\"scheme\":\"w4-gptq\",\"groupSize\":128}")
        .setModel(ref("a", "hf-llama"))
        .setInputs(
            List.of(
                StageInput.newBuilder()
                    .setNode("calib")
                    .setStage("calibrator")
                    .setArtefacts(List.of(ref("b", "calibration")))
                    .build()))
        .setTimeoutMs(1000)
        .setDispatchedAt(Instant.EPOCH)
        .build();
  }

  @Test
  void aCheckpointOutputNamesItsRunStageParamsModelAndInputs() throws Exception {
    Path out = Files.createDirectories(dir.resolve("ckpt"));

    LineageManifest.writeIfCheckpoint(
        out, "compressed-tensors", "quantizer", job(), Map.of("layersQuantized", 7.0));

    JsonNode m = new ObjectMapper().readTree(out.resolve(LineageManifest.FILE_NAME).toFile());
    assertThat(m.path("stage").asText()).isEqualTo("quantizer");
    assertThat(m.path("runId").asText()).isEqualTo("run-1");
    assertThat(m.path("attempt").asInt()).isEqualTo(2);
    assertThat(m.path("params").path("scheme").asText()).isEqualTo("w4-gptq");
    assertThat(m.path("model").path("sha256").asText()).startsWith("aaaa");
    assertThat(m.path("inputs").get(0).path("node").asText()).isEqualTo("calib");
    assertThat(m.path("inputs").get(0).path("format").asText()).isEqualTo("calibration");
    assertThat(m.path("metrics").path("layersQuantized").asDouble()).isEqualTo(7.0);
  }

  @Test
  void otherOutputsAreLeftAlone() throws Exception {
    Path report = Files.createDirectories(dir.resolve("report"));
    Path file = Files.writeString(dir.resolve("calibration.safetensors"), "x");

    LineageManifest.writeIfCheckpoint(report, "eval-report", "evaluator", job(), Map.of());
    LineageManifest.writeIfCheckpoint(file, "hf-llama", "pruner", job(), Map.of());

    assertThat(report.resolve(LineageManifest.FILE_NAME)).doesNotExist();
    assertThat(dir.resolve(LineageManifest.FILE_NAME)).doesNotExist();
  }

  @Test
  void aCheckpointPassedOnKeepsTheLineageOfTheStageThatMadeIt() throws Exception {
    Path chosen = Files.createDirectories(dir.resolve("chosen"));
    Files.writeString(chosen.resolve(LineageManifest.FILE_NAME), "{\"stage\":\"quantizer\"}");

    LineageManifest.writeIfCheckpoint(chosen, "compressed-tensors", "evaluator", job(), Map.of());

    assertThat(chosen.resolve(LineageManifest.FILE_NAME)).hasContent("{\"stage\":\"quantizer\"}");
  }
}
