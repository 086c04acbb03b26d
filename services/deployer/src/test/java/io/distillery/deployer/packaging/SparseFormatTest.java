package io.distillery.deployer.packaging;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.distillery.deployer.DeployerParams;
import io.distillery.deployer.TestCheckpoints;
import io.distillery.model.config.LlamaTensorNames;
import io.distillery.model.quant.CompressedTensors;
import io.distillery.model.quant.CompressedTensorsConformance;
import io.distillery.model.quant.QuantizationScheme;
import io.distillery.model.quant.QuantizedWeight;
import io.distillery.model.safetensors.Checkpoint;
import io.distillery.model.safetensors.DType;
import io.distillery.schemas.common.ArtefactRef;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The deployer's {@code sparseFormat}: the compressed 2:4 layout where vLLM runs it, dense with the
 * reason elsewhere, and a refusal naming vLLM's rule when the compressed layout is asked for where
 * vLLM cannot load it.
 */
class SparseFormatTest {

  private static final ObjectMapper JSON = new ObjectMapper();
  private static final String DOWN = "model.layers.0.mlp.down_proj";
  private static final List<String> IGNORE = List.of("lm_head");
  private static final long BUDGET = 4L << 30;

  @TempDir Path tmp;

  private Path teacher;

  @BeforeEach
  void teacher() throws Exception {
    teacher = TestCheckpoints.dense(tmp.resolve("teacher"), 2, true);
  }

  private static DeployerParams params(String target, String sparseFormat) throws Exception {
    return JSON.readValue(
        "{\"target\":\""
            + target
            + "\""
            + (sparseFormat == null ? "" : ", \"sparseFormat\":\"" + sparseFormat + "\"")
            + "}",
        DeployerParams.class);
  }

  private Path model(Path checkpoint, String name) throws Exception {
    return DjlServingPackage.assembleModel(checkpoint, teacher, tmp.resolve("pkg-" + name));
  }

  private static DjlServingPackage.Written written(Path model, DeployerParams p) throws Exception {
    String sha = "ab" + "0".repeat(62);
    ArtefactRef ref =
        ArtefactRef.newBuilder()
            .setUri("file:///store/artefacts/ab/" + sha + "/")
            .setSha256(sha)
            .setBytes(1)
            .setFormat(DjlServingPackage.MODEL_FORMAT)
            .build();
    return DjlServingPackage.write(
        model.getParent(),
        new DjlServingPackage.Spec("d", "run", "run/deploy", "deploy", "q", ref, null, ref, p));
  }

  private static String sparsityFormat(Path dir) throws Exception {
    return JSON.readTree(dir.resolve("config.json").toFile())
        .at("/quantization_config/sparsity_config/format")
        .asText();
  }

  @Test
  void shouldStoreTheCompressedLayoutAndLeaveTheStoredCheckpointAloneWhenAutoOnGpuVllm()
      throws Exception {
    Path source = TestCheckpoints.twoFour(tmp.resolve("pruned"), 3, null);
    Path model = model(source, "auto");

    SparseFormat.Decision d = SparseFormat.apply(model, params("gpu-vllm", null), BUDGET);

    assertThat(d.format()).isEqualTo("sparse-24-bitmask");
    assertThat(d.warnings()).isEmpty();
    assertThat(sparsityFormat(model)).isEqualTo("sparse-24-bitmask");
    assertThat(CompressedTensorsConformance.violations(model)).isEmpty();
    try (Checkpoint c = Checkpoint.open(model)) {
      assertThat(c.contains(DOWN + ".weight")).isFalse();
      assertThat(c.info(DOWN + ".compressed").dtype()).isEqualTo(DType.F32);
      assertThat(c.info(DOWN + ".bitmask").shape()).containsExactly(64, 128 / 8);
    }
    assertThat(model.resolve("tokenizer.json")).exists();
    // the package's files were hard links into the store: the stored checkpoint is unchanged
    assertThat(sparsityFormat(source)).isEqualTo("dense");
    try (Checkpoint c = Checkpoint.open(source)) {
      assertThat(c.contains(DOWN + ".weight")).isTrue();
      assertThat(c.contains(DOWN + ".bitmask")).isFalse();
    }
    // what the serving node loads (CompressedTensors.loadAny -> decompress) is the pruned model
    Path back = tmp.resolve("back");
    CompressedTensors.decompress(model, back);
    try (Checkpoint original = Checkpoint.open(source);
        Checkpoint restored = Checkpoint.open(back)) {
      for (String name : LlamaTensorNames.shapes(TestCheckpoints.CONFIG).keySet()) {
        assertThat(restored.floats(name)).as(name).containsExactly(original.floats(name));
      }
    }
    // and the package is written: gpu-vllm's conformance check passes on the compressed layout
    DjlServingPackage.Written written = written(model, params("gpu-vllm", null));
    assertThat(written.warnings()).anyMatch(w -> w.contains("CompressedTensors24"));
  }

  @Test
  void shouldDropTheSparsityDeclarationAndKeepTheWeightsWhenNone() throws Exception {
    Path source = TestCheckpoints.twoFour(tmp.resolve("pruned-none"), 3, null);
    Path model = model(source, "none");

    SparseFormat.Decision d = SparseFormat.apply(model, params("gpu-vllm", "none"), BUDGET);

    assertThat(d.format()).isEqualTo("none");
    // a sparsity-only quantization_config goes whole: a plain dense model, which any vLLM loads
    assertThat(JSON.readTree(model.resolve("config.json").toFile()).has("quantization_config"))
        .isFalse();
    try (Checkpoint original = Checkpoint.open(source);
        Checkpoint packaged = Checkpoint.open(model)) {
      for (String name : LlamaTensorNames.shapes(TestCheckpoints.CONFIG).keySet()) {
        assertThat(packaged.floats(name)).as(name).containsExactly(original.floats(name));
      }
    }
    assertThat(sparsityFormat(source)).isEqualTo("dense"); // the store's config is untouched
    DjlServingPackage.Written written = written(model, params("gpu-vllm", "none"));
    assertThat(written.warnings()).noneMatch(w -> w.contains("CompressedTensors24"));

    // a quantized 2:4 checkpoint keeps its quantization_config, with an empty sparsity_config
    Path w8a8 =
        TestCheckpoints.twoFour(
            tmp.resolve("w8a8-none"),
            4,
            new QuantizationScheme(QuantizedWeight.Kind.INT8_CHANNEL, 32, true, IGNORE));
    Path quantized = model(w8a8, "w8a8-none");
    SparseFormat.apply(quantized, params("gpu-vllm", "none"), BUDGET);
    JsonNode q =
        JSON.readTree(quantized.resolve("config.json").toFile()).get("quantization_config");
    assertThat(q.get("config_groups").isEmpty()).isFalse();
    assertThat(q.get("sparsity_config").isEmpty()).isTrue();
    assertThat(CompressedTensorsConformance.violations(quantized)).isEmpty();
  }

  @Test
  void shouldCompressTheInt8CodesWhenAutoOnW8A8() throws Exception {
    Path source =
        TestCheckpoints.twoFour(
            tmp.resolve("w8a8"),
            4,
            new QuantizationScheme(QuantizedWeight.Kind.INT8_CHANNEL, 32, true, IGNORE));
    Path model = model(source, "w8a8");

    assertThat(SparseFormat.apply(model, params("gpu-vllm", "auto"), BUDGET).format())
        .isEqualTo("sparse-24-bitmask");

    assertThat(CompressedTensorsConformance.violations(model)).isEmpty();
    Map<String, QuantizedWeight> before = CompressedTensors.readQuantized(source);
    Map<String, QuantizedWeight> after = CompressedTensors.readQuantized(model);
    for (String m : before.keySet()) {
      assertThat(after.get(m).codes()).as(m).containsExactly(before.get(m).codes());
    }
    try (Checkpoint c = Checkpoint.open(model)) {
      assertThat(c.info(DOWN + ".compressed").dtype()).isEqualTo(DType.I8);
    }
  }

  @Test
  void shouldKeepWeightOnlyLayersDenseWithVllmsReasonWhenAuto() throws Exception {
    Path source =
        TestCheckpoints.twoFour(
            tmp.resolve("w4"),
            5,
            new QuantizationScheme(QuantizedWeight.Kind.INT4_GROUP, 32, false, IGNORE)
                .withSymmetric(true));
    Path model = model(source, "w4");

    SparseFormat.Decision d = SparseFormat.apply(model, params("gpu-vllm", null), BUDGET);

    assertThat(d.format()).isEqualTo("dense");
    assertThat(d.warnings())
        .singleElement()
        .asString()
        .contains("gpu-vllm: the 2:4 weights stay dense")
        .contains("quantizes weights only (4-bit int)")
        .contains("compressed_tensors.py get_scheme / supports_cutlass_24");
    assertThat(sparsityFormat(model)).isEqualTo("dense");
    try (Checkpoint c = Checkpoint.open(model)) {
      assertThat(c.contains(DOWN + ".weight_packed")).isTrue();
    }
    assertThat(written(model, params("gpu-vllm", null)).warnings())
        .as("weight-only layers go to WNA16, not CompressedTensors24: no Hopper warning")
        .noneMatch(w -> w.contains("CompressedTensors24"));
  }

  @Test
  void shouldRefuseTheCompressedLayoutNamingVllmsRuleWhereVllmCannotLoadIt() throws Exception {
    Path w4 =
        TestCheckpoints.twoFour(
            tmp.resolve("w4"),
            5,
            new QuantizationScheme(QuantizedWeight.Kind.INT4_GROUP, 32, false, IGNORE)
                .withSymmetric(true));
    assertThatThrownBy(
            () ->
                SparseFormat.apply(
                    model(w4, "w4"), params("gpu-vllm", "sparse-24-bitmask"), BUDGET))
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessageContaining("sparseFormat: sparse-24-bitmask refused: config_groups.group_0")
        .hasMessageContaining(
            "vLLM model_executor/layers/quantization/compressed_tensors/compressed_tensors.py "
                + "get_scheme / supports_cutlass_24 returns False for weight-only quantization");

    Path pruned = TestCheckpoints.twoFour(tmp.resolve("pruned"), 3, null);
    assertThatThrownBy(
            () ->
                SparseFormat.apply(
                    model(pruned, "trt"), params("gpu-trtllm", "sparse-24-bitmask"), BUDGET))
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessageContaining("target gpu-trtllm does not load it");

    Path dense = TestCheckpoints.dense(tmp.resolve("dense"), 1, false);
    assertThatThrownBy(
            () ->
                SparseFormat.apply(
                    model(dense, "dense"), params("gpu-vllm", "sparse-24-bitmask"), BUDGET))
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessageContaining("needs a 2:4-pruned checkpoint")
        .hasMessageContaining("no sparsity_config");
  }

  @Test
  void shouldRefuseBeforeWritingWhenTheRewriteCannotFitTheBudget() throws Exception {
    Path source = TestCheckpoints.twoFour(tmp.resolve("pruned"), 3, null);
    Path model = model(source, "small");
    assertThatThrownBy(() -> SparseFormat.apply(model, params("gpu-vllm", null), 100L << 20))
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessageContaining("storing the 2:4 weights sparse-24-bitmask needs")
        .hasMessageContaining("use sparseFormat: dense");
    assertThat(sparsityFormat(model)).isEqualTo("dense");
  }

  @Test
  void shouldLeaveTheWeightsDenseWhenAskedOrOffVllm() throws Exception {
    Path source = TestCheckpoints.twoFour(tmp.resolve("pruned"), 3, null);
    for (String[] c :
        new String[][] {{"gpu-vllm", "dense"}, {"local", null}, {"gpu-trtllm", "auto"}}) {
      Path model = model(source, c[0] + "-" + c[1]);
      SparseFormat.Decision d = SparseFormat.apply(model, params(c[0], c[1]), BUDGET);
      assertThat(d.format()).as(c[0] + " " + c[1]).isEqualTo("dense");
      assertThat(d.warnings()).as(c[0] + " " + c[1]).isEmpty();
      assertThat(sparsityFormat(model)).isEqualTo("dense");
      try (Checkpoint ck = Checkpoint.open(model)) {
        assertThat(ck.contains(DOWN + ".weight")).isTrue();
      }
    }
    Path dense = TestCheckpoints.dense(tmp.resolve("plain"), 1, false);
    SparseFormat.Decision none =
        SparseFormat.apply(model(dense, "plain"), params("gpu-vllm", null), BUDGET);
    assertThat(none.format()).isNull();
    JsonNode q = JSON.readTree(dense.resolve("config.json").toFile()).path("quantization_config");
    assertThat(q.isMissingNode()).isTrue();
  }
}
