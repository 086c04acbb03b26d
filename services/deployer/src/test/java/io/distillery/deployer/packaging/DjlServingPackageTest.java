package io.distillery.deployer.packaging;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.MappingIterator;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.dataformat.yaml.YAMLFactory;
import io.distillery.deployer.DeployerParams;
import io.distillery.deployer.TestCheckpoints;
import io.distillery.schemas.common.ArtefactRef;
import java.io.IOException;
import java.io.StringReader;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Properties;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class DjlServingPackageTest {

  static final ObjectMapper YAML = new ObjectMapper(new YAMLFactory());
  static final ObjectMapper JSON = new ObjectMapper();
  static final String MODEL_SHA = "ab" + "0".repeat(62);

  @TempDir Path tmp;

  static DeployerParams params(String json) throws Exception {
    return JSON.readValue(json, DeployerParams.class);
  }

  Path pkg(Path checkpoint, Path tokenizerSource, DeployerParams p) throws IOException {
    Path pkg = tmp.resolve("pkg");
    DjlServingPackage.assembleModel(checkpoint, tokenizerSource, pkg);
    ArtefactRef parent =
        ArtefactRef.newBuilder()
            .setUri(checkpoint.toUri().toString())
            .setSha256("cd" + "1".repeat(62))
            .setBytes(123)
            .setFormat("compressed-tensors")
            .build();
    ArtefactRef model =
        ArtefactRef.newBuilder()
            .setUri("file:///store/artefacts/ab/" + MODEL_SHA + "/")
            .setSha256(MODEL_SHA)
            .setBytes(456)
            .setFormat(DjlServingPackage.MODEL_FORMAT)
            .build();
    DjlServingPackage.write(
        pkg,
        new DjlServingPackage.Spec(
            "Chat.Bot-1", "run-7", "run-7/deploy", "deploy", "q4", parent, null, model, p));
    return pkg;
  }

  static Properties properties(Path f) throws IOException {
    Properties p = new Properties();
    p.load(new StringReader(Files.readString(f)));
    return p;
  }

  @Test
  void shouldWriteAnLmiVllmPackageThatLetsVllmReadTheStoredWeights() throws Exception {
    Path ckpt = TestCheckpoints.w4(tmp.resolve("w4"), 1);
    Path teacher = TestCheckpoints.dense(tmp.resolve("teacher"), 2, true);
    Path pkg = pkg(ckpt, teacher, params("{\"target\":\"gpu\",\"maxRollingBatchSize\":8}"));

    // serving/docs/lmi/user_guides/vllm_user_guide.md, deployment_guide/configurations.md,
    // vllm_rb_properties.py
    Properties gpu = properties(pkg.resolve("gpu/serving.properties"));
    assertThat(gpu.getProperty("engine")).isEqualTo("Python");
    assertThat(gpu.getProperty("option.async_mode")).isEqualTo("true");
    assertThat(gpu.getProperty("option.rolling_batch")).isEqualTo("disable");
    assertThat(gpu.getProperty("option.entryPoint"))
        .isEqualTo("djl_python.lmi_vllm.vllm_async_service");
    assertThat(gpu.getProperty("option.tensor_parallel_degree")).isEqualTo("1");
    assertThat(gpu.getProperty("option.max_rolling_batch_size")).isEqualTo("8");
    assertThat(gpu.getProperty("option.model_id")).isEqualTo("/opt/ml/model/model");
    assertThat(gpu.getProperty("option.max_model_len")).isEqualTo("128"); // 64 in + 64 out
    assertThat(gpu.getProperty("option.dtype"))
        .as("float32 checkpoint: Marlin takes fp16/bf16")
        .isEqualTo("bf16");
    assertThat(gpu.getProperty("option.quantize"))
        .as("pre-quantized: vLLM reads config.json itself")
        .isNull();
    assertThat(gpu.stringPropertyNames())
        .as("no TensorRT-LLM container keys")
        .noneMatch(
            k ->
                k.contains("quant_algo")
                    || k.contains("mpi_mode")
                    || k.contains("max_output_len")
                    || k.contains("max_input_len"));
    assertThat(Files.readString(pkg.resolve("gpu/serving.properties")))
        .contains("vllm_user_guide.md")
        .contains("configurations.md")
        .contains("vllm_rb_properties.py")
        .doesNotContain("${");

    Properties cpu = properties(pkg.resolve("serving.properties"));
    assertThat(cpu.getProperty("engine")).isEqualTo("Python");
    assertThat(cpu.getProperty("option.entryPoint")).isEqualTo("djl_python.huggingface");
    assertThat(cpu.getProperty("option.task")).isEqualTo("text-generation");
    assertThat(cpu.getProperty("option.quantize")).isNull();
    assertThat(Files.readString(pkg.resolve("serving.properties")))
        .contains("configurations_model.md")
        .contains("compressed-tensors pack-quantized");

    // model/ holds the checkpoint and the tokenizer borrowed from the run's model
    assertThat(pkg.resolve("model/model.safetensors")).exists();
    assertThat(pkg.resolve("model/tokenizer.json")).exists();
    assertThat(pkg.resolve("model/tokenizer_config.json")).exists();
    assertThat(ckpt.resolve("tokenizer.json")).doesNotExist();
    assertThat(pkg.resolve("trtllm")).doesNotExist();

    JsonNode manifest = JSON.readTree(pkg.resolve("manifest.json").toFile());
    assertThat(manifest.path("format").asText()).isEqualTo("djl-serving");
    assertThat(manifest.path("runId").asText()).isEqualTo("run-7");
    assertThat(manifest.path("parent").path("sha256").asText()).startsWith("cd1111");
    assertThat(manifest.path("parent").path("node").asText()).isEqualTo("q4");
    assertThat(manifest.path("target").asText()).isEqualTo("gpu-vllm");
    assertThat(manifest.path("params").path("canaryPercent").asInt()).isEqualTo(100);
    assertThat(manifest.path("quantization").path("scheme").asText()).isEqualTo("w4a16");
    assertThat(manifest.path("quantization").path("groupSize").asInt()).isEqualTo(32);
    assertThat(manifest.path("quantization").path("zeroPoint").asBoolean()).isTrue();
    // the tiny model's 64-wide layers are below Marlin's 128-column tiles: packaged, with the
    // reason
    assertThat(manifest.path("warnings").get(0).asText()).contains("GPTQ_MARLIN_MIN_THREAD_K");
  }

  @Test
  void shouldLeaveQuantizationOutForADenseCheckpoint() throws Exception {
    Path ckpt = TestCheckpoints.dense(tmp.resolve("dense"), 3, true);
    Path pkg = pkg(ckpt, null, params("{\"maxInputTokens\":100}"));
    Properties gpu = properties(pkg.resolve("gpu/serving.properties"));
    assertThat(gpu.getProperty("option.quantize")).isNull();
    assertThat(gpu.getProperty("option.max_model_len")).isEqualTo("128");
    JsonNode manifest = JSON.readTree(pkg.resolve("manifest.json").toFile());
    assertThat(manifest.path("quantization").path("scheme").asText()).isEqualTo("none");
    assertThat(manifest.path("warnings")).isEmpty();
  }

  @Test
  void shouldWriteAKubernetesDeploymentOnOneGpuWithAReadinessProbeOnPing() throws Exception {
    Path pkg =
        pkg(
            TestCheckpoints.w4(tmp.resolve("w4"), 1),
            TestCheckpoints.dense(tmp.resolve("t"), 2, true),
            params("{}"));
    List<JsonNode> docs;
    try (MappingIterator<JsonNode> it =
        YAML.readerFor(JsonNode.class).readValues(pkg.resolve("k8s/deployment.yaml").toFile())) {
      docs = it.readAll();
    }
    assertThat(docs)
        .extracting(d -> d.path("kind").asText())
        .containsExactly("ConfigMap", "Deployment");
    JsonNode configMap = docs.get(0);
    Properties fromMap = new Properties();
    fromMap.load(new StringReader(configMap.path("data").path("serving.properties").asText()));
    assertThat(fromMap).isEqualTo(properties(pkg.resolve("gpu/serving.properties")));

    JsonNode deployment = docs.get(1);
    assertThat(deployment.path("apiVersion").asText()).isEqualTo("apps/v1");
    assertThat(deployment.path("metadata").path("name").asText())
        .isEqualTo("distillery-chat-bot-1");
    assertThat(deployment.path("metadata").path("labels").path("distillery.io/deployment").asText())
        .isEqualTo("Chat.Bot-1");
    JsonNode pod = deployment.path("spec").path("template").path("spec");
    JsonNode c = pod.path("containers").get(0);
    assertThat(c.path("image").asText()).isEqualTo(DjlServingPackage.IMAGE).contains("lmi20");
    assertThat(c.path("resources").path("limits").path("nvidia.com/gpu").asInt()).isEqualTo(1);
    assertThat(c.path("ports").get(0).path("containerPort").asInt()).isEqualTo(8080);
    assertThat(c.path("readinessProbe").path("httpGet").path("path").asText()).isEqualTo("/ping");
    assertThat(c.path("readinessProbe").path("httpGet").path("port").asInt()).isEqualTo(8080);
    JsonNode modelMount = c.path("volumeMounts").get(0);
    assertThat(modelMount.path("mountPath").asText()).isEqualTo("/opt/ml/model/model");
    assertThat(modelMount.path("subPath").asText()).isEqualTo("artefacts/ab/" + MODEL_SHA);
    assertThat(pod.path("volumes").get(0).path("persistentVolumeClaim").path("claimName").asText())
        .isEqualTo("distillery-store");
    JsonNode podLabels = deployment.path("spec").path("template").path("metadata").path("labels");
    deployment
        .path("spec")
        .path("selector")
        .path("matchLabels")
        .properties()
        .forEach(
            e -> assertThat(podLabels.path(e.getKey())).as(e.getKey()).isEqualTo(e.getValue()));
  }

  @Test
  void shouldRefuseACheckpointWithoutTokenizerOrConfig() throws Exception {
    Path noTokenizer = TestCheckpoints.w4(tmp.resolve("w4"), 1);
    assertThatThrownBy(() -> DjlServingPackage.assembleModel(noTokenizer, null, tmp.resolve("p1")))
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessageContaining("no tokenizer");
    Path empty = Files.createDirectories(tmp.resolve("empty"));
    assertThatThrownBy(() -> DjlServingPackage.assembleModel(empty, null, tmp.resolve("p2")))
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessageContaining("no config.json");
  }

  @Test
  void shouldRefuseTokenLimitsBeyondTheModelContext() throws Exception {
    Path ckpt = TestCheckpoints.dense(tmp.resolve("dense"), 3, true);
    assertThatThrownBy(
            () -> pkg(ckpt, null, params("{\"maxInputTokens\":100,\"maxOutputTokens\":100}")))
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessageContaining("maxInputTokens + maxOutputTokens")
        .hasMessageContaining("128");
  }

  @Test
  void shouldCopyTheEvaluatorsReportIntoThePackage() throws Exception {
    Path report = Files.createDirectories(tmp.resolve("report"));
    Files.writeString(report.resolve("report.json"), "{\"chosen\":\"q4\"}");
    Path pkg = tmp.resolve("pkg");
    DjlServingPackage.assembleModel(TestCheckpoints.dense(tmp.resolve("d"), 1, true), null, pkg);
    DjlServingPackage.copyReport(report, pkg);
    assertThat(pkg.resolve("report.json")).hasContent("{\"chosen\":\"q4\"}");
    assertThatThrownBy(
            () -> DjlServingPackage.copyReport(Files.createDirectories(tmp.resolve("empty")), pkg))
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessageContaining("report.json");
  }
}
