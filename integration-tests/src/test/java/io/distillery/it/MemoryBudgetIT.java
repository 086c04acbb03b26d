package io.distillery.it;

import static org.assertj.core.api.Assertions.assertThat;

import io.distillery.model.config.LlamaConfig;
import io.distillery.model.llama.LlamaModel;
import io.distillery.model.safetensors.Checkpoint;
import io.distillery.model.safetensors.DType;
import io.distillery.model.tokenizer.ByteTokenizer;
import io.distillery.planner.PlannerApp;
import io.distillery.runtime.worker.WorkerHost;
import io.distillery.schemas.run.RunState;
import io.distillery.schemas.run.StageState;
import io.distillery.stage.StageRegistry;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.List;
import java.util.stream.Collectors;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * Issue 16's bad inputs on the real broker, against a calibrator worker whose memory budget is 64
 * MiB: a model that cannot fit fails fatal before any work, and a missing shard, a truncated shard
 * and a tensor whose shape disagrees with config.json each fail fatal naming the problem; every
 * reason shows in the run's state and in {@code watch}.
 */
class MemoryBudgetIT {

  static final long BUDGET = 64L << 20;
  static final LlamaConfig TINY =
      LlamaConfig.builder()
          .vocabSize(ByteTokenizer.VOCAB_SIZE)
          .hiddenSize(32)
          .intermediateSize(64)
          .numHiddenLayers(2)
          .numAttentionHeads(4)
          .numKeyValueHeads(2)
          .maxPositionEmbeddings(64)
          .tieWordEmbeddings(false)
          .build();
  static final String RECIPE =
      """
      name: budget
      stages:
        calib: { stage: calibrator, params: { samples: 4, seqLen: 16 } }
      """;

  static PlannerApp planner;
  static WorkerHost calibrator;

  @BeforeAll
  static void start() throws Exception {
    planner = Cluster.planner(Cluster.newDir("planner"));
    calibrator =
        WorkerHost.start(
            StageRegistry.discover().get("calibrator"),
            Cluster.workerConfig("budget-64m").withMemoryBudget(BUDGET));
  }

  @AfterAll
  static void stop() {
    calibrator.close();
    planner.close();
  }

  @Test
  void shouldFailFatalBeforeAnyWorkWhenTheModelCannotFitTheWorkersBudget() throws Exception {
    // 4 layers of width 512, MLP 1024: 9 707 008 parameters = 38.8 MB in F32; X^T X in doubles:
    // 8 x (4 x (2 x 512^2 + 512^2 + 1024^2) + 512^2) = 60.8 MB; 99.6 MB in all, against 64 MiB =
    // 67.1 MB
    LlamaConfig big =
        LlamaConfig.builder()
            .vocabSize(ByteTokenizer.VOCAB_SIZE)
            .hiddenSize(512)
            .intermediateSize(1024)
            .numHiddenLayers(4)
            .numAttentionHeads(8)
            .numKeyValueHeads(4)
            .maxPositionEmbeddings(64)
            .tieWordEmbeddings(false)
            .build();
    Path model = save(big, "too-big");

    RunState r = fail(model, "this worker has 67.1 MB: raise DISTILLERY_WORKER_MEMORY");
    StageState calib = r.getStages().getFirst();
    assertThat(calib.getPercent()).as("no progress: refused before loading").isZero();
    assertThat(calib.getOutputs()).isEmpty();
  }

  @Test
  void shouldFailFatalNamingTheShardAndATensorWhenAnIndexedShardIsMissing() throws Exception {
    Path model = save(TINY, "lost-shard");
    Path first = model.resolve("model-00001-of-00002.safetensors");
    Files.move(model.resolve(Checkpoint.SINGLE_FILE), first);
    List<String> names;
    try (Checkpoint c = Checkpoint.open(first)) {
      names = List.copyOf(c.tensorNames());
    }
    String map =
        names.stream()
            .map(
                n ->
                    "\""
                        + n
                        + "\": \"model-0000"
                        + (n.equals("lm_head.weight") ? 2 : 1)
                        + "-of-00002.safetensors\"")
            .collect(Collectors.joining(", "));
    Files.writeString(model.resolve(Checkpoint.INDEX_FILE), "{\"weight_map\": {" + map + "}}");

    fail(
        model, "shard model-00002-of-00002.safetensors listed for 'lm_head.weight' does not exist");
  }

  @Test
  void shouldFailFatalNamingTheFileAndBothSizesWhenAShardIsTruncated() throws Exception {
    Path model = save(TINY, "truncated");
    Path file = model.resolve(Checkpoint.SINGLE_FILE);
    long size = Files.size(file);
    try (FileChannel channel = FileChannel.open(file, StandardOpenOption.WRITE)) {
      channel.truncate(size - 100);
    }

    fail(model, "model.safetensors: file is truncated");
    fail(model, "should be " + size + " bytes but it is " + (size - 100) + " bytes");
  }

  @Test
  void shouldFailFatalNamingTensorShapeAndConfigKeyWhenAShapeDisagreesWithConfigJson()
      throws Exception {
    Path model = save(TINY, "wrong-shape");
    LlamaConfig claimed =
        LlamaConfig.builder()
            .vocabSize(ByteTokenizer.VOCAB_SIZE)
            .hiddenSize(32)
            .intermediateSize(48)
            .numHiddenLayers(2)
            .numAttentionHeads(4)
            .numKeyValueHeads(2)
            .maxPositionEmbeddings(64)
            .tieWordEmbeddings(false)
            .build();
    Files.writeString(model.resolve(LlamaConfig.FILE_NAME), claimed.toJson());

    fail(
        model,
        "tensor 'model.layers.0.mlp.gate_proj.weight' has shape [64, 32] but config.json implies [48, 32]"
            + " (from intermediate_size 48)");
  }

  private static Path save(LlamaConfig config, String name) throws Exception {
    Path model = Cluster.newDir(name);
    try (LlamaModel m = LlamaModel.random(config, 5)) {
      m.save(model, DType.BF16);
    }
    ByteTokenizer.instance().save(model);
    return model;
  }

  private static RunState fail(Path model, String problem) throws Exception {
    return Cluster.awaitFatal(model, RECIPE, problem);
  }
}
