package io.distillery.it;

import static org.assertj.core.api.Assertions.assertThat;

import ai.djl.ndarray.NDManager;
import io.distillery.model.config.LlamaConfig;
import io.distillery.model.llama.LlamaModel;
import io.distillery.model.quant.CompressedTensors;
import io.distillery.model.safetensors.DType;
import io.distillery.model.tokenizer.ByteTokenizer;
import io.distillery.schemas.run.RunState;
import io.distillery.schemas.run.RunStatus;
import io.distillery.schemas.run.StageState;
import io.distillery.schemas.run.StageStatus;
import java.net.URI;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.LinkedHashMap;
import java.util.Map;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * Issue 4's recipe on the real broker: calibrator -> six quantization schemes and three 2:4
 * pruners, fanned out by the planner to the real calibrator, quantizer and pruner workers; every
 * output loads, runs in the model core and stays within a bound of the dense model's logits on a
 * prompt calibration did not see. And the bad inputs: each fails its node with a non-retryable
 * reason that names the problem.
 */
class CompressionIT {

  static Cluster.Services services;
  static Path model;

  static final String ALL =
      """
      name: compress-all
      timeout: 5m
      stages:
        calib: { stage: calibrator, params: { samples: 16, seqLen: 32 } }
        w8:    { stage: quantizer, after: [calib], params: { scheme: w8-rtn } }
        w4:    { stage: quantizer, after: [calib], params: { scheme: w4-rtn, groupSize: 32 } }
        awq:   { stage: quantizer, after: [calib], params: { scheme: w4-awq, groupSize: 32 } }
        gptq:  { stage: quantizer, after: [calib], params: { scheme: w4-gptq, groupSize: 32 } }
        sq:    { stage: quantizer, after: [calib], params: { scheme: w8a8-smoothquant, alpha: 0.5 } }
        fp8:   { stage: quantizer, after: [calib], params: { scheme: fp8 } }
        mag:   { stage: pruner, after: [calib], params: { method: magnitude, pattern: "2:4", sparsity: 0.5 } }
        wanda: { stage: pruner, after: [calib], params: { method: wanda, pattern: "2:4", sparsity: 0.5 } }
        sgpt:  { stage: pruner, after: [calib], params: { method: sparsegpt, pattern: "2:4", sparsity: 0.5 } }
      """;

  @BeforeAll
  static void start() throws Exception {
    services = Cluster.services(true, "compress", "calibrator", "quantizer", "pruner");
    model = Cluster.newDir("tiny-llama");
    LlamaConfig cfg =
        LlamaConfig.builder()
            .vocabSize(ByteTokenizer.VOCAB_SIZE)
            .hiddenSize(64)
            .intermediateSize(128)
            .numHiddenLayers(2)
            .numAttentionHeads(4)
            .numKeyValueHeads(2)
            .maxPositionEmbeddings(128)
            .build();
    try (LlamaModel m = LlamaModel.random(cfg, 11)) {
      m.save(model, DType.F32);
    }
    ByteTokenizer.instance().save(model);
  }

  @AfterAll
  static void stop() {
    services.close();
  }

  static StageState stage(RunState r, String node) {
    return r.getStages().stream().filter(s -> s.getNode().equals(node)).findFirst().orElseThrow();
  }

  static String run(Path modelDir, String recipe) throws Exception {
    var reg =
        Cluster.cli(
            "register",
            "--model",
            modelDir.toString(),
            "--recipe",
            Cluster.recipe(recipe).toString());
    assertThat(reg.code()).as(reg.err()).isZero();
    return reg.out().trim();
  }

  @Test
  void shouldCalibrateQuantizeAndPruneThroughThePlannerWhenTheRecipeFansOut() throws Exception {
    String runId = run(model, ALL);
    RunState done =
        Cluster.awaitRun(runId, r -> r.getStatus() != RunStatus.RUNNING, Duration.ofMinutes(5));
    assertThat(done.getStatus())
        .as(String.valueOf(done.getReason()))
        .isEqualTo(RunStatus.SUCCEEDED);
    assertThat(stage(done, "calib").getOutputs())
        .singleElement()
        .satisfies(a -> assertThat(a.getFormat()).isEqualTo("calibration"));
    int[][] prompt = {ByteTokenizer.instance().encode("12+34=")};
    float[] dense = logits(LlamaModel.load(model), QUALITY_PROMPT);
    Map<String, Double> error = new LinkedHashMap<>();
    for (String q : new String[] {"w8", "w4", "awq", "gptq", "sq", "fp8"}) {
      StageState s = stage(done, q);
      assertThat(s.getOutputs())
          .singleElement()
          .satisfies(a -> assertThat(a.getFormat()).isEqualTo("compressed-tensors"));
      assertThat(s.getMetrics().get("weight_bytes_after"))
          .as(q)
          .isLessThan(s.getMetrics().get("weight_bytes_before"));
      Path dir = Path.of(URI.create(s.getOutputs().getFirst().getUri()));
      assertThat(CompressedTensors.isCompressed(dir)).isTrue();
      try (LlamaModel m = CompressedTensors.loadDequantized(dir);
          NDManager nd = NDManager.newBaseManager()) {
        assertThat(m.forward(nd, prompt).getShape().get(2)).isEqualTo(ByteTokenizer.VOCAB_SIZE);
      }
      error.put(
          q, relativeError(dense, logits(CompressedTensors.loadDequantized(dir), QUALITY_PROMPT)));
    }
    for (String p : new String[] {"mag", "wanda", "sgpt"}) {
      StageState s = stage(done, p);
      assertThat(s.getMetrics().get("sparsity")).as(p).isGreaterThan(0.3);
      Path dir = Path.of(URI.create(s.getOutputs().getFirst().getUri()));
      error.put(p, relativeError(dense, logits(LlamaModel.load(dir), QUALITY_PROMPT)));
      try (LlamaModel m = LlamaModel.load(dir)) {
        float[] w = m.linearWeight("model.layers.0.mlp.down_proj");
        for (int g = 0; g < w.length; g += 4) {
          int zeros = 0;
          for (int k = 0; k < 4; k++) {
            zeros += w[g + k] == 0 ? 1 : 0;
          }
          assertThat(zeros).as(p + " group " + g).isGreaterThanOrEqualTo(2);
        }
      }
    }
    // quality against the dense model, not only shapes: relative logit error ||z' - z|| / ||z|| on
    // a held-out prompt
    for (Map.Entry<String, Double> e : error.entrySet()) {
      assertThat(e.getValue())
          .as(e.getKey() + " logit error (all: " + error + ")")
          .isLessThan(MAX_LOGIT_ERROR.get(e.getKey()));
    }
    // 8 bits are closer to the dense model than 4, and quantizing to 4 bits closer than zeroing
    // half the weights
    assertThat(error.get("w8")).as(error.toString()).isLessThan(error.get("w4") / 4);
    assertThat(Math.max(error.get("w4"), Math.max(error.get("awq"), error.get("gptq"))))
        .as(error.toString())
        .isLessThan(Math.min(error.get("mag"), Math.min(error.get("wanda"), error.get("sgpt"))));
    // the calibrated pruners keep closer to the dense model than magnitude
    assertThat(error.get("wanda")).as(error.toString()).isLessThan(error.get("mag"));
    assertThat(error.get("sgpt")).as(error.toString()).isLessThan(error.get("mag"));
  }

  /**
   * A prompt unlike the calibration samples' task text, so that the check is on inputs calibration
   * did not see.
   */
  static final String QUALITY_PROMPT =
      "The distillery pruned 2:4 and quantized to INT4; 17*3=51, 90-45=45.";

  /**
   * Upper bounds on the relative logit error, about 2x what each scheme measured on this tiny
   * random model (w8 0.006, w4 0.069, awq 0.089, gptq 0.101, sq 0.030, fp8 0.027, mag 0.415, wanda
   * 0.373, sgpt 0.360).
   */
  static final Map<String, Double> MAX_LOGIT_ERROR =
      Map.of(
          "w8", 0.015, "w4", 0.15, "awq", 0.2, "gptq", 0.2, "sq", 0.06, "fp8", 0.06, "mag", 0.8,
          "wanda", 0.8, "sgpt", 0.8);

  /**
   * Next-token logits at every position of {@code text}, {@code [tokens * vocab]}; closes the
   * model.
   */
  static float[] logits(LlamaModel model, String text) throws Exception {
    try (model;
        NDManager nd = NDManager.newBaseManager()) {
      return model.forward(nd, new int[][] {ByteTokenizer.instance().encode(text)}).toFloatArray();
    }
  }

  /**
   * ||z' - z|| / ||z|| over all positions, logits centred per position (a softmax ignores a shared
   * offset).
   */
  static double relativeError(float[] dense, float[] other) {
    int vocab = ByteTokenizer.VOCAB_SIZE;
    double err = 0;
    double ref = 0;
    for (int t = 0; t < dense.length / vocab; t++) {
      double md = 0;
      double mo = 0;
      for (int v = 0; v < vocab; v++) {
        md += dense[t * vocab + v];
        mo += other[t * vocab + v];
      }
      md /= vocab;
      mo /= vocab;
      for (int v = 0; v < vocab; v++) {
        double d = dense[t * vocab + v] - md;
        double o = other[t * vocab + v] - mo;
        err += (o - d) * (o - d);
        ref += d * d;
      }
    }
    return Math.sqrt(err / ref);
  }

  @Test
  void shouldFailTheNodeWithANamedReasonWhenInputIsBad() throws Exception {
    String[][] cases = {
      {"quantizer", "{ scheme: w4-rtn, groupSize: 48 }", "48"},
      {"quantizer", "{ scheme: w3-magic }", "scheme"},
      {"pruner", "{ method: wanda, sparsity: 1.5 }", "sparsity"},
    };
    for (String[] c : cases) {
      String runId =
          run(
              model,
              """
          name: bad
          stages:
            calib: { stage: calibrator, params: { samples: 4, seqLen: 16 } }
            x: { stage: %s, after: [calib], params: %s }
          """
                  .formatted(c[0], c[1]));
      RunState r =
          Cluster.awaitRun(runId, s -> s.getStatus() != RunStatus.RUNNING, Duration.ofMinutes(2));
      assertThat(r.getStatus()).isEqualTo(RunStatus.FAILED);
      assertThat(stage(r, "x").getAttempt()).as("not retried").isEqualTo(1);
      assertThat(r.getReason()).as(c[1]).contains(c[2]);
      var watch = Cluster.cli("watch", runId, "--plain", "--timeout", "30");
      assertThat(watch.out()).contains("FAILED").contains(c[2]);
    }
    Path gpt2 = Cluster.newDir("gpt2");
    Files.writeString(
        gpt2.resolve("config.json"),
        "{\"architectures\": [\"GPT2LMHeadModel\"], \"model_type\": \"gpt2\"}");
    String runId = run(gpt2, "name: unsupported\nstages:\n  calib: { stage: calibrator }\n");
    RunState r =
        Cluster.awaitRun(runId, s -> s.getStatus() != RunStatus.RUNNING, Duration.ofMinutes(2));
    assertThat(r.getStatus()).isEqualTo(RunStatus.FAILED);
    assertThat(r.getReason()).contains("GPT2");
    assertThat(stage(r, "calib").getStatus()).isEqualTo(StageStatus.FAILED);
  }
}
