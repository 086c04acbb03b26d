package io.distillery.serving;

import static org.assertj.core.api.Assertions.assertThat;

import io.distillery.model.config.LlamaConfig;
import io.distillery.model.config.LlamaTensorNames;
import io.distillery.model.llama.LlamaModel;
import io.distillery.model.quant.CompressedTensors;
import io.distillery.model.quant.GroupQuantizer;
import io.distillery.model.quant.QuantizationScheme;
import io.distillery.model.quant.QuantizedWeight;
import io.distillery.model.tokenizer.ByteTokenizer;
import io.distillery.model.tasks.ExactMatch;
import io.vertx.core.json.JsonObject;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Map.Entry;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** A quantizer output (compressed-tensors, W4 groups) is served dequantized on load. */
class CompressedCheckpointTest {

  @TempDir
  Path tmp;

  @Test
  void shouldServeACompressedTensorsCheckpointWithTheDequantizedModelsAnswers() throws Exception {
    Path dense = TinyCheckpoints.write(Files.createDirectories(tmp.resolve("dense")), 64, 2, 41);
    Path w4 = tmp.resolve("w4");
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
          quantized.put(module, GroupQuantizer.int4Group(tensors.get(module + ".weight"), (int) shape[0],
              (int) shape[1], 16));
        }
      }
      CompressedTensors.write(w4, config, tensors, quantized, Map.of(),
          new QuantizationScheme(QuantizedWeight.Kind.INT4_GROUP, 16, false, List.of("lm_head")));
    }
    ByteTokenizer.instance().save(w4);
    String expected;
    try (LlamaModel dequantized = CompressedTensors.loadDequantized(w4)) {
      expected = ExactMatch.answer(dequantized, ByteTokenizer.instance(), "5+5=", 8);
    }

    ServingConfig config = ServingConfig.of(null, null, null).withNodeId("w4")
        .withConfidenceThreshold(Double.NEGATIVE_INFINITY);
    try (ServingNode node = ServingNode.start(config, new CapturedEvents())) {
      node.serveLocal("w4", w4, null);
      Http.Reply r = Http.complete(node.url(), new JsonObject().put("prompt", "5+5=").put("max_tokens", 8));
      assertThat(r.status()).as(r.text()).isEqualTo(200);
      assertThat(r.json().getJsonArray("choices").getJsonObject(0).getString("text")).isEqualTo(expected);
    }
  }
}
