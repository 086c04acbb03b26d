package io.distillery.stage;

import static org.assertj.core.api.Assertions.assertThat;

import io.distillery.schemas.common.ArtefactRef;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

class StageContextTest {

  private static final Path REGISTERED = Path.of("/store/teacher");

  @Test
  void shouldWorkOnTheRegisteredModelWhenNoUpstreamNodeProducedACheckpoint() {
    var calib =
        new StageContext.Input(
            "calib", "calibrator", List.of(artefact("/store/calib", "calibration")), Map.of());
    var run =
        new StageContext.Input(
            "$run", "input", List.of(artefact("/store/deployed", "hf-checkpoint")), Map.of());

    assertThat(context(List.of(run, calib)).inputModel()).isEqualTo(REGISTERED);
  }

  @Test
  void shouldWorkOnTheUpstreamCheckpointWhenAChainTransformsAStudent() {
    var distill =
        new StageContext.Input(
            "distill", "distiller", List.of(artefact("/store/student", "hf-llama")), Map.of());
    var calib =
        new StageContext.Input(
            "calib", "calibrator", List.of(artefact("/store/calib", "calibration")), Map.of());

    assertThat(context(List.of(distill, calib)).inputModel()).isEqualTo(Path.of("/store/student"));
  }

  private static StageContext<Record> context(List<StageContext.Input> inputs) {
    return new StageContext<>(
        null,
        null,
        REGISTERED,
        inputs,
        Path.of("/tmp/s"),
        Path.of("/tmp/w"),
        (percent, message, metrics) -> {});
  }

  private static StageContext.Artefact artefact(String path, String format) {
    return new StageContext.Artefact(
        ArtefactRef.newBuilder()
            .setUri("file://" + path)
            .setSha256("ab".repeat(32))
            .setBytes(1)
            .setFormat(format)
            .build(),
        Path.of(path));
  }
}
