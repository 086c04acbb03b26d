package io.distillery.distiller;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.distillery.platform.model.config.LlamaConfig;
import io.distillery.platform.model.llama.LlamaModel;
import io.distillery.platform.model.safetensors.DType;
import io.distillery.platform.stage.ProgressSink;
import io.distillery.platform.stage.StageContext;
import io.distillery.platform.stage.StageParams;
import io.distillery.platform.stage.StageResult;
import io.distillery.platform.tasks.TaskExample;
import io.distillery.platform.tasks.TaskJsonl;
import io.distillery.schemas.common.ArtefactRef;
import io.distillery.schemas.job.StageJob;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class DistillerStageTest {

  static final String PARAMS = "{\"student\":{\"layers\":1,\"hidden\":16,\"heads\":2,\"kvHeads\":1,"
      + "\"intermediate\":24},\"steps\":6,\"batch\":2,\"lr\":0.01,\"checkpointEvery\":2,\"seed\":1}";

  static StageContext<DistillerParams> context(Path tmp, List<TaskExample> data, int attempt, ProgressSink sink)
      throws Exception {
    Path model = tmp.resolve("teacher");
    if (!Files.exists(model)) {
      LlamaConfig c = LlamaConfig.builder().vocabSize(260).hiddenSize(32).intermediateSize(48).numHiddenLayers(2)
          .numAttentionHeads(4).numKeyValueHeads(2).headDim(8).maxPositionEmbeddings(64).build();
      try (LlamaModel m = LlamaModel.random(c, 3)) {
        m.save(model, DType.F32);
      }
    }
    Path file = tmp.resolve("data.jsonl");
    TaskJsonl.write(file, data);
    DistillerParams params = StageParams.bind("distiller", PARAMS, DistillerParams.class);
    ArtefactRef ref = ArtefactRef.newBuilder().setUri(model.toUri().toString()).setSha256("ab".repeat(32))
        .setBytes(1).setFormat("hf-llama").build();
    ArtefactRef ds = ArtefactRef.newBuilder().setUri(file.toUri().toString()).setSha256("cd".repeat(32))
        .setBytes(1).setFormat("dataset").build();
    StageJob job = StageJob.newBuilder().setRunId("run-1").setJobId("run-1/distill").setAttempt(attempt)
        .setStage("distiller").setNode("distill").setParams(PARAMS).setModel(ref).setTimeoutMs(60_000)
        .setDispatchedAt(Instant.now()).build();
    Path work = Files.createDirectories(tmp.resolve("work"));
    Path scratch = Files.createDirectories(tmp.resolve("scratch-" + attempt));
    return new StageContext<>(job, params, model, List.of(new StageContext.Input("data", "dataset",
        List.of(new StageContext.Artefact(ds, file)), Map.of())), scratch, work, sink);
  }

  static List<TaskExample> data() {
    return List.of(new TaskExample("t", "1+1=", "2"), new TaskExample("t", "2+2=", "4"));
  }

  @Test
  void shouldResumeFromCheckpointWhenRetriedAfterInterruption(@TempDir Path tmp) throws Exception {
    assertThatThrownBy(() -> new DistillerStage().run(context(tmp, data(), 1, (pct, msg, m) -> {
      if (m.get("step") >= 3) {
        throw new IllegalStateException("worker killed");
      }
    }))).isInstanceOf(Exception.class);
    List<Double> steps = new ArrayList<>();
    StageResult result = new DistillerStage().run(context(tmp, data(), 2, (pct, msg, m) -> {
      if (m.containsKey("step")) {
        steps.add(m.get("step"));
      }
    }));
    assertThat(steps.getFirst()).isEqualTo(3.0); // checkpoint after step 2
    assertThat(steps.getLast()).isEqualTo(6.0);
    Path out = result.outputs().getFirst().path();
    assertThat(out.resolve("distillery-manifest.json")).exists();
    assertThat(out.resolve("config.json")).exists();
    assertThat(result.metrics().get("studentParams")).isLessThan(result.metrics().get("teacherParams"));
  }

  @Test
  void shouldFailFatallyWhenDatasetEmpty(@TempDir Path tmp) {
    assertThatThrownBy(() -> new DistillerStage().run(context(tmp, List.of(), 1, (pct, msg, m) -> {})))
        .hasMessageContaining("empty");
  }
}
