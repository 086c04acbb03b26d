package io.distillery.serving;

import static org.assertj.core.api.Assertions.assertThat;

import io.distillery.model.config.LlamaConfig;
import io.distillery.model.config.LlamaTensorNames;
import io.distillery.model.llama.LlamaModel;
import io.distillery.model.quant.CompressedTensors;
import io.distillery.model.quant.GroupQuantizer;
import io.distillery.model.quant.QuantizationScheme;
import io.distillery.model.quant.QuantizedWeight;
import io.distillery.model.tasks.ExactMatch;
import io.distillery.model.tokenizer.ByteTokenizer;
import io.vertx.core.json.JsonObject;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Map.Entry;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Quantizer outputs (compressed-tensors: W4 groups asymmetric and symmetric, W8A16 as 8-bit
 * pack-quantized, FP8 weight-only as naive-quantized) are served dequantized on load, through
 * {@link CompressedTensors#loadAny}.
 */
class CompressedCheckpointTest {

  @TempDir Path tmp;

  @Test
  void shouldServeACompressedTensorsCheckpointWithTheDequantizedModelsAnswers() throws Exception {
    List<QuantizationScheme> schemes =
        List.of(
            new QuantizationScheme(QuantizedWeight.Kind.INT4_GROUP, 16, false, List.of("lm_head")),
            new QuantizationScheme(QuantizedWeight.Kind.INT4_GROUP, 16, false, List.of("lm_head"))
                .withSymmetric(true),
            new QuantizationScheme(
                QuantizedWeight.Kind.INT8_CHANNEL, 16, false, List.of("lm_head")),
            new QuantizationScheme(
                QuantizedWeight.Kind.FP8_CHANNEL, 16, false, List.of("lm_head")));
    for (int i = 0; i < schemes.size(); i++) {
      serve(schemes.get(i), tmp.resolve("scheme-" + i));
    }
  }

  private void serve(QuantizationScheme scheme, Path root) throws Exception {
    Path dense = TinyCheckpoints.write(Files.createDirectories(root.resolve("dense")), 64, 2, 41);
    Path w4 = root.resolve("w4");
    try (LlamaModel m = LlamaModel.load(dense)) {
      LlamaConfig config = m.config();
      Map<String, float[]> tensors = new LinkedHashMap<>();
      for (Entry<String, ai.djl.ndarray.NDArray> e : m.parameters().entrySet()) {
        tensors.put(e.getKey(), e.getValue().toFloatArray());
      }
      Map<String, QuantizedWeight> quantized = new LinkedHashMap<>();
      for (String module : LlamaTensorNames.linearModules(config)) {
        if (!module.equals("lm_head")) {
          long[] shape = LlamaTensorNames.shapes(config).get(module + ".weight");
          float[] w = tensors.get(module + ".weight");
          quantized.put(
              module,
              switch (scheme.kind()) {
                case INT4_GROUP ->
                    GroupQuantizer.int4Group(
                        w, (int) shape[0], (int) shape[1], 16, scheme.symmetric());
                case INT8_CHANNEL ->
                    GroupQuantizer.int8PerChannel(w, (int) shape[0], (int) shape[1]);
                case FP8_CHANNEL -> GroupQuantizer.fp8PerChannel(w, (int) shape[0], (int) shape[1]);
              });
        }
      }
      CompressedTensors.write(w4, config, tensors, quantized, Map.of(), scheme);
    }
    ByteTokenizer.instance().save(w4);
    String expected;
    try (LlamaModel dequantized = CompressedTensors.loadDequantized(w4)) {
      expected = ExactMatch.answer(dequantized, ByteTokenizer.instance(), "5+5=", 8);
    }

    ServingConfig config =
        ServingConfig.of(null, null, null)
            .withNodeId("w4")
            .withConfidenceThreshold(Double.NEGATIVE_INFINITY);
    try (ServingNode node = ServingNode.start(config, new CapturedEvents())) {
      node.serveLocal("w4", w4, null);
      Http.Reply r =
          Http.complete(node.url(), new JsonObject().put("prompt", "5+5=").put("max_tokens", 8));
      assertThat(r.status()).as(scheme + ": " + r.text()).isEqualTo(200);
      assertThat(r.json().getJsonArray("choices").getJsonObject(0).getString("text"))
          .as(scheme.format())
          .isEqualTo(expected);
    }
  }
}
