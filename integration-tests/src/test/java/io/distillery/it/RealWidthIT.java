package io.distillery.it;

import static org.assertj.core.api.Assertions.assertThat;

import io.distillery.model.config.LlamaConfig;
import io.distillery.model.config.LlamaTensorNames;
import io.distillery.model.config.RopeScaling;
import io.distillery.model.safetensors.RandomCheckpoint;
import io.distillery.model.tokenizer.ByteTokenizer;
import io.distillery.planner.PlannerApp;
import io.distillery.runtime.worker.WorkerHost;
import io.distillery.schemas.run.RunState;
import io.distillery.schemas.run.RunStatus;
import io.distillery.schemas.run.StageState;
import io.distillery.stage.StageRegistry;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.stream.Collectors;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * Issue 16 on the real broker: a model of Llama-3.2-1B's width and vocabulary (hidden 2048, MLP
 * 8192, 32/8 heads, llama3 rope scaling, 128,256 tokens, tied; four of its 16 layers; BF16 in two
 * shards with an index: 506M parameters, 1.0 GB on disk, 2.0 GB in F32) goes through calibrate ->
 * quantize -> evaluate on workers whose budget is 1.5 GiB, four fifths of what the model needs in
 * F32 alone (the streamed evaluation of a reference and a candidate plans 1.5 GB). Each stage must
 * plan it, stream it one decoder layer at a time, and finish within its plan. (One decoder layer of
 * this width is planned at 0.73 GB: widened to F32 as Java and DJL arrays plus its rewritten copy;
 * with the runtime's 0.47 GB no smaller budget can hold it.)
 */
class RealWidthIT {

  static final long BUDGET = 1536L << 20;
  static final LlamaConfig ONE_B_WIDTH =
      LlamaConfig.builder()
          .vocabSize(128256)
          .hiddenSize(2048)
          .intermediateSize(8192)
          .numHiddenLayers(4)
          .numAttentionHeads(32)
          .numKeyValueHeads(8)
          .maxPositionEmbeddings(2048)
          .rmsNormEps(1e-5)
          .ropeTheta(500000)
          .ropeScaling(RopeScaling.llama3(32, 1, 4, 8192))
          .tieWordEmbeddings(true)
          .build();
  static final String RECIPE =
      """
      name: real-width
      timeout: 10m
      stages:
        calib: { stage: calibrator, params: { samples: 4, seqLen: 32 } }
        q4:    { stage: quantizer, after: [calib], params: { scheme: w4-rtn, groupSize: 128 } }
        eval:  { stage: evaluator, after: [q4], params: { samples: 16, latencyRuns: 1, decodeTokens: 2 } }
      """;

  static PlannerApp planner;
  static List<WorkerHost> workers;

  @BeforeAll
  static void start() throws Exception {
    planner = Cluster.planner(Cluster.newDir("planner"));
    List<WorkerHost> started = new ArrayList<>();
    for (String stage : List.of("calibrator", "quantizer", "evaluator")) {
      started.add(
          WorkerHost.start(
              StageRegistry.discover().get(stage),
              Cluster.workerConfig("width-" + stage).withMemoryBudget(BUDGET)));
    }
    workers = started;
  }

  @AfterAll
  static void stop() {
    workers.forEach(WorkerHost::close);
    planner.close();
  }

  @Test
  void shouldCalibrateQuantizeAndEvaluateAModelOfOneBillionWidthWithinAWorkerBudgetBelowItsF32Size()
      throws Exception {
    long f32Bytes = 4 * LlamaTensorNames.parameterCount(ONE_B_WIDTH);
    assertThat(f32Bytes).as("the model alone in F32 exceeds the budget").isGreaterThan(BUDGET);
    Path model = Cluster.newDir("one-b-width");
    RandomCheckpoint.write(ONE_B_WIDTH, model, 3);
    ByteTokenizer.instance().save(model);

    var reg =
        Cluster.cli(
            "register", "--model", model.toString(), "--recipe", Cluster.recipe(RECIPE).toString());
    assertThat(reg.code()).as(reg.err()).isZero();
    String runId = reg.out().trim();
    RunState r =
        Cluster.awaitRun(runId, s -> s.getStatus() != RunStatus.RUNNING, Duration.ofMinutes(8));

    Map<String, StageState> stages =
        r.getStages().stream().collect(Collectors.toMap(StageState::getNode, s -> s));
    assertThat(r.getStatus()).as(String.valueOf(r.getReason())).isEqualTo(RunStatus.SUCCEEDED);
    for (String node : List.of("calib", "q4", "eval")) {
      StageState s = stages.get(node);
      assertThat(s.getAttempt()).as(node + " not retried").isEqualTo(1);
      assertThat(s.getMetrics()).as(node).containsEntry("streamed", 1.0);
    }
    assertThat(stages.get("calib").getMetrics()).containsEntry("layers", 28.0);
    Map<String, Double> q4 = stages.get("q4").getMetrics();
    assertThat(q4.get("planned_peak_bytes")).isLessThanOrEqualTo((double) BUDGET);
    assertThat(q4.get("weight_bytes_after")).isLessThan(0.4 * q4.get("weight_bytes_before"));
    assertThat(stages.get("eval").getOutputs()).isNotEmpty();
  }
}
