package io.distillery.it;

import io.distillery.model.config.LlamaConfig;
import io.distillery.model.llama.LlamaModel;
import io.distillery.model.safetensors.DType;
import io.distillery.model.tokenizer.ByteTokenizer;
import java.nio.file.Path;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * Issue 17's bad inputs on the real broker: a checkpoint the engines could not load or run is
 * refused as a fatal error that names the engine's rule, and the reason shows in {@code watch}: an
 * exclude that splits vLLM's fused q/k/v group (refused by the quantizer before any work), a group
 * size off vLLM's Marlin kernels for the GPU target, and a scheme TensorRT-LLM has no pre-quantized
 * form for (both refused by the deployer before it packages anything).
 */
class EngineFormatsIT {

  // widths that group sizes 48 and 128 both divide, so the quantizer accepts what the GPU refuses
  static final LlamaConfig CONFIG =
      LlamaConfig.builder()
          .vocabSize(ByteTokenizer.VOCAB_SIZE)
          .hiddenSize(384)
          .intermediateSize(768)
          .numHiddenLayers(1)
          .numAttentionHeads(6)
          .numKeyValueHeads(2)
          .maxPositionEmbeddings(64)
          .tieWordEmbeddings(false)
          .build();

  static Cluster.Services services;
  static Path model;

  @BeforeAll
  static void start() throws Exception {
    services = Cluster.services(true, "formats", "quantizer", "deployer");
    model = Cluster.newDir("formats-model");
    try (LlamaModel m = LlamaModel.random(CONFIG, 9)) {
      m.save(model, DType.BF16);
    }
    ByteTokenizer.instance().save(model);
  }

  @AfterAll
  static void stop() {
    services.close();
  }

  @Test
  void shouldFailFatalNamingTheFusedGroupWhenAnExcludeSplitsQkv() throws Exception {
    Cluster.awaitFatal(
        model,
        """
        name: split-qkv
        stages:
          q4: { stage: quantizer, params: { scheme: w4-rtn, exclude: [k_proj] } }
        """,
        "splits the fused group qkv_proj");
  }

  @Test
  void shouldFailFatalNamingMarlinsGroupSizesWhenAGpuTargetGetsGroupSize48() throws Exception {
    Cluster.awaitFatal(
        model,
        """
        name: group-48
        stages:
          q4:     { stage: quantizer, params: { scheme: w4-rtn, groupSize: 48 } }
          deploy: { stage: deployer, after: [q4], params: { target: gpu, deployment: formats-gpu } }
        """,
        "requantize with groupSize 32, 64 or 128");
  }

  @Test
  void shouldFailFatalNamingTheReasonWhenTensorRtLlmCannotTakeTheScheme() throws Exception {
    Cluster.awaitFatal(
        model,
        """
        name: trtllm-w8
        stages:
          q8:     { stage: quantizer, params: { scheme: w8-rtn } }
          deploy: { stage: deployer, after: [q8], params: { target: gpu-trtllm, deployment: formats-trt } }
        """,
        "target gpu-trtllm: TensorRT-LLM has no pre-quantized form for w8a16");
  }
}
