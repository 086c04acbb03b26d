package io.distillery.deployer;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.distillery.deployer.rollout.FakeChannel;
import io.distillery.runtime.artefact.FileArtefactStore;
import io.distillery.schemas.common.ArtefactRef;
import io.distillery.schemas.deployment.DeploymentRequested;
import io.distillery.schemas.job.StageInput;
import io.distillery.schemas.job.StageJob;
import io.distillery.stage.StageContext;
import io.distillery.stage.StageException;
import io.distillery.stage.StageParams;
import io.distillery.stage.StageResult;
import java.net.URI;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class DeployerStageTest {

  @TempDir Path tmp;

  FileArtefactStore store;
  FakeChannel channel;
  List<String> opened;
  DeployerStage stage;
  ArtefactRef teacher;
  ArtefactRef w4;

  @BeforeEach
  void setUp() throws Exception {
    store = new FileArtefactStore(tmp.resolve("store"));
    channel = new FakeChannel();
    channel.onPublish = (c, e) -> c.answer("node-1", (DeploymentRequested) e.getPayload());
    opened = new ArrayList<>();
    stage =
        new DeployerStage(
            store,
            d -> {
              opened.add(d);
              return channel;
            },
            channel.clock);
    teacher = store.put(TestCheckpoints.dense(tmp.resolve("teacher"), 1, true), "hf-model", false);
    w4 = store.put(TestCheckpoints.w4(tmp.resolve("w4"), 2), "compressed-tensors", false);
  }

  StageContext<DeployerParams> ctx(
      String params, Map<String, String> labels, List<StageContext.Input> inputs) throws Exception {
    List<StageInput> in =
        inputs.stream()
            .map(
                i ->
                    StageInput.newBuilder()
                        .setNode(i.node())
                        .setStage(i.stage())
                        .setArtefacts(
                            i.artefacts().stream().map(StageContext.Artefact::ref).toList())
                        .build())
            .toList();
    StageJob job =
        StageJob.newBuilder()
            .setRunId("run-1")
            .setJobId("run-1/deploy")
            .setAttempt(1)
            .setStage("deployer")
            .setNode("deploy")
            .setParams(params)
            .setModel(teacher)
            .setInputs(in)
            .setLabels(labels)
            .setTimeoutMs(60_000)
            .setDispatchedAt(Instant.now())
            .build();
    return new StageContext<>(
        job,
        StageParams.bind("deployer", params, DeployerParams.class),
        store.resolve(teacher),
        inputs,
        store.newScratch(),
        store.workDir("run-1/deploy"),
        (p, m, x) -> {});
  }

  StageContext.Input input(String node, ArtefactRef... refs) throws Exception {
    List<StageContext.Artefact> arts = new ArrayList<>();
    for (ArtefactRef r : refs) {
      arts.add(new StageContext.Artefact(r, store.resolve(r)));
    }
    return new StageContext.Input(node, node, arts, Map.of());
  }

  @Test
  void shouldPackageTheUpstreamCheckpointStoreItAndRollItOut() throws Exception {
    Path reportDir = Files.createDirectories(tmp.resolve("report"));
    Files.writeString(reportDir.resolve("report.json"), "{\"picked\":\"q4\"}");
    ArtefactRef report = store.put(reportDir, "eval-report", false);
    StageContext<DeployerParams> ctx =
        ctx(
            "{\"redistillRecipe\":\"recipes/x.yaml\"}",
            Map.of("deployment", "chat", "modelId", "tiny"),
            List.of(input("$run"), input("eval", w4, report)));
    StageResult result = stage.run(ctx);

    assertThat(opened).containsExactly("chat");
    assertThat(channel.closed).isTrue();
    DeploymentRequested r = (DeploymentRequested) channel.published.getFirst().getPayload();
    assertThat(channel.published.getFirst().getDeploymentId()).isEqualTo("chat");
    assertThat(r.getTarget()).isEqualTo("local");
    assertThat(r.getCanaryPercent()).isEqualTo(100);
    assertThat(r.getTeacher()).isEqualTo(teacher);
    assertThat(r.getArtefact().getFormat()).isEqualTo("djl-serving");
    Path pkg = store.resolve(r.getArtefact());
    assertThat(pkg.resolve("model/model.safetensors")).exists();
    assertThat(pkg.resolve("model/tokenizer.json")).exists();
    assertThat(pkg.resolve("gpu/serving.properties")).exists();
    assertThat(pkg.resolve("k8s/deployment.yaml")).exists();
    assertThat(pkg.resolve("report.json")).hasContent("{\"picked\":\"q4\"}");
    JsonNode manifest = new ObjectMapper().readTree(pkg.resolve("manifest.json").toFile());
    assertThat(manifest.path("parent").path("sha256").asText()).isEqualTo(w4.getSha256());
    assertThat(manifest.path("parent").path("node").asText()).isEqualTo("eval");
    assertThat(manifest.path("files").path("report").asText()).isEqualTo("report.json");
    assertThat(r.getLabels())
        .containsEntry("runId", "run-1")
        .containsEntry("modelId", "tiny")
        .containsEntry("redistillRecipe", "recipes/x.yaml")
        .containsEntry("teacher", teacher.getUri());
    assertThat(Path.of(URI.create(r.getLabels().get("student")))).isEqualTo(pkg.resolve("model"));

    // the returned output is the same content: the host's put finds it stored and keeps one copy
    assertThat(result.outputs())
        .singleElement()
        .satisfies(
            o -> {
              assertThat(o.format()).isEqualTo("djl-serving");
              assertThat(store.put(o.path(), o.format(), false)).isEqualTo(r.getArtefact());
            });
    assertThat(result.metrics())
        .containsEntry("nodes", 1.0)
        .containsEntry("canaryRequests", 0.0)
        .containsKey("secondsToActive")
        .containsEntry("maxInputTokens", 64.0);
  }

  @Test
  void shouldFailFatallyNamingTheRuleWhenTheGpuTargetCannotRunTheCheckpoint() throws Exception {
    // w4 here has zero points: TensorRT-LLM's W4A16_AWQ is symmetric; nothing is published
    assertThatThrownBy(
            () ->
                stage.run(
                    ctx(
                        "{\"deployment\":\"chat\",\"target\":\"gpu-trtllm\"}",
                        Map.of(),
                        List.of(input("q4", w4)))))
        .isInstanceOf(StageException.Fatal.class)
        .hasMessageContaining("target gpu-trtllm")
        .hasMessageContaining("W4A16_AWQ is symmetric");
    assertThat(channel.published).isEmpty();
    // the same checkpoint on vLLM: packaged, with the Marlin shape warning in the progress the
    // watch shows
    List<String> messages = new ArrayList<>();
    StageContext<DeployerParams> vllm =
        ctx(
            "{\"deployment\":\"chat\",\"target\":\"gpu-vllm\"}",
            Map.of(),
            List.of(input("q4", w4)));
    stage.run(
        new StageContext<>(
            vllm.job(),
            vllm.params(),
            vllm.model(),
            vllm.inputs(),
            vllm.scratch(),
            store.workDir("run-1/deploy-vllm"),
            (p, m, x) -> messages.add(m)));
    assertThat(messages)
        .anyMatch(m -> m.startsWith("warning: gpu-vllm") && m.contains("GPTQ_MARLIN_MIN_THREAD_K"));
  }

  @Test
  void shouldPackageA24CheckpointCompressedForVllmAndRefuseTheLayoutWhereVllmCannotLoadIt()
      throws Exception {
    ArtefactRef pruned =
        store.put(TestCheckpoints.twoFour(tmp.resolve("pruned"), 3, null), "hf-llama", false);
    List<String> messages = new ArrayList<>();
    StageContext<DeployerParams> vllm =
        ctx(
            "{\"deployment\":\"chat\",\"target\":\"gpu-vllm\"}",
            Map.of(),
            List.of(input("prune", pruned)));
    stage.run(
        new StageContext<>(
            vllm.job(),
            vllm.params(),
            vllm.model(),
            vllm.inputs(),
            vllm.scratch(),
            vllm.workDir(),
            (p, m, x) -> messages.add(m)));
    assertThat(messages).contains("2:4 weights stored sparse-24-bitmask (sparseFormat auto)");
    Path pkg =
        store.resolve(
            ((DeploymentRequested) channel.published.getFirst().getPayload()).getArtefact());
    assertThat(
            new ObjectMapper()
                .readTree(pkg.resolve("model/config.json").toFile())
                .at("/quantization_config/sparsity_config/format")
                .asText())
        .isEqualTo("sparse-24-bitmask");
    assertThat(
            new ObjectMapper()
                .readTree(store.resolve(pruned).resolve("config.json").toFile())
                .at("/quantization_config/sparsity_config/format")
                .asText())
        .as("the stored checkpoint is not written through its links")
        .isEqualTo("dense");

    ArtefactRef w4Pruned =
        store.put(
            TestCheckpoints.twoFour(
                tmp.resolve("w4-pruned"),
                3,
                new io.distillery.model.quant.QuantizationScheme(
                        io.distillery.model.quant.QuantizedWeight.Kind.INT4_GROUP,
                        32,
                        false,
                        List.of("lm_head"))
                    .withSymmetric(true)),
            "compressed-tensors",
            false);
    int published = channel.published.size();
    assertThatThrownBy(
            () ->
                stage.run(
                    ctx(
                        "{\"deployment\":\"chat\",\"target\":\"gpu-vllm\","
                            + "\"sparseFormat\":\"sparse-24-bitmask\"}",
                        Map.of(),
                        List.of(input("q4", w4Pruned)))))
        .isInstanceOf(StageException.Fatal.class)
        .hasMessageContaining("sparseFormat: sparse-24-bitmask refused")
        .hasMessageContaining("supports_cutlass_24 returns False for weight-only quantization");
    assertThat(channel.published).hasSize(published);
  }

  @Test
  void shouldDeployTheRunsModelWhenThereIsNoUpstreamNode() throws Exception {
    stage.run(ctx("{\"deployment\":\"solo\"}", Map.of(), List.of(input("$run"))));
    DeploymentRequested r = (DeploymentRequested) channel.published.getFirst().getPayload();
    JsonNode manifest =
        new ObjectMapper()
            .readTree(store.resolve(r.getArtefact()).resolve("manifest.json").toFile());
    assertThat(manifest.path("parent").path("sha256").asText()).isEqualTo(teacher.getSha256());
    assertThat(manifest.path("quantization").path("scheme").asText()).isEqualTo("none");
  }

  @Test
  void shouldFailNamingBothSourcesWhenNoDeploymentIdIsGiven() throws Exception {
    assertThatThrownBy(() -> stage.run(ctx("{}", Map.of(), List.of(input("q4", w4)))))
        .isInstanceOf(StageException.Fatal.class)
        .hasMessageContaining("'deployment'")
        .hasMessageContaining("label");
    assertThat(channel.published).isEmpty();
  }

  @Test
  void shouldFailWhenTheUpstreamNodesProducedNoCheckpoint() throws Exception {
    Path dir = Files.createDirectories(tmp.resolve("calib"));
    Files.writeString(dir.resolve("stats.json"), "{}");
    ArtefactRef calib = store.put(dir, "calibration", false);
    assertThatThrownBy(
            () ->
                stage.run(ctx("{\"deployment\":\"d\"}", Map.of(), List.of(input("calib", calib)))))
        .isInstanceOf(StageException.Fatal.class)
        .hasMessageContaining("no checkpoint among the outputs of [calib]")
        .hasMessageContaining("calibration");
  }

  @Test
  void shouldTakeADirectoryWithConfigAndWeightsOfAnyFormatAsACheckpoint() throws Exception {
    ArtefactRef merged =
        store.put(TestCheckpoints.w4(tmp.resolve("merged"), 9), "my-lora-merged", false);
    Path dir = Files.createDirectories(tmp.resolve("notes"));
    Files.writeString(
        dir.resolve("config.json"), "{}"); // a config but no weights: not a checkpoint
    ArtefactRef notes = store.put(dir, "notes", false);
    stage.run(ctx("{\"deployment\":\"d\"}", Map.of(), List.of(input("merge", notes, merged))));
    DeploymentRequested r = (DeploymentRequested) channel.published.getFirst().getPayload();
    JsonNode manifest =
        new ObjectMapper()
            .readTree(store.resolve(r.getArtefact()).resolve("manifest.json").toFile());
    assertThat(manifest.path("parent").path("sha256").asText()).isEqualTo(merged.getSha256());
    assertThat(manifest.path("quantization").path("scheme").asText()).isEqualTo("w4a16");
  }

  @Test
  void shouldRefuseToRunOutsideAWorkerHost() {
    assertThatThrownBy(
            () -> new DeployerStage().run(ctx("{\"deployment\":\"d\"}", Map.of(), List.of())))
        .isInstanceOf(StageException.Fatal.class)
        .hasMessageContaining("worker host");
  }
}
