package io.distillery.distiller;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.distillery.model.config.LlamaConfig;
import io.distillery.model.llama.LlamaModel;
import io.distillery.model.safetensors.DType;
import io.distillery.model.tasks.TaskExample;
import io.distillery.model.tasks.TaskJsonl;
import io.distillery.model.tokenizer.ByteTokenizer;
import io.distillery.schemas.common.ArtefactRef;
import io.distillery.schemas.job.StageJob;
import io.distillery.stage.FileTrees;
import io.distillery.stage.ProgressSink;
import io.distillery.stage.StageContext;
import io.distillery.stage.StageException;
import io.distillery.stage.StageParams;
import io.distillery.stage.StageResult;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class DistillerStageTest {

  static final String STUDENT =
      "\"student\":{\"layers\":1,\"hidden\":16,\"heads\":2,\"kvHeads\":1,\"intermediate\":24}";
  static final String PARAMS =
      "{"
          + STUDENT
          + ",\"steps\":6,\"batch\":2,\"lr\":0.01,\"checkpointEvery\":2,"
          + "\"progressEvery\":1,\"seed\":1}";

  static Path teacher(Path tmp) throws Exception {
    Path model = tmp.resolve("teacher");
    if (!Files.exists(model)) {
      LlamaConfig c =
          LlamaConfig.builder()
              .vocabSize(ByteTokenizer.VOCAB_SIZE)
              .hiddenSize(32)
              .intermediateSize(48)
              .numHiddenLayers(2)
              .numAttentionHeads(4)
              .numKeyValueHeads(2)
              .headDim(8)
              .maxPositionEmbeddings(64)
              .build();
      try (LlamaModel m = LlamaModel.random(c, 3)) {
        m.save(model, DType.F32);
      }
      ByteTokenizer.instance().save(model);
    }
    return model;
  }

  static ArtefactRef ref(Path p, String format) {
    return ArtefactRef.newBuilder()
        .setUri(p.toUri().toString())
        .setSha256("ab".repeat(32))
        .setBytes(1)
        .setFormat(format)
        .build();
  }

  static StageContext<DistillerParams> context(
      Path tmp, String params, List<StageContext.Input> inputs, int attempt, ProgressSink sink)
      throws Exception {
    Path model = teacher(tmp);
    DistillerParams p = StageParams.bind("distiller", params, DistillerParams.class);
    StageJob job =
        StageJob.newBuilder()
            .setRunId("run-1")
            .setJobId("run-1/distill")
            .setAttempt(attempt)
            .setStage("distiller")
            .setNode("distill")
            .setParams(params)
            .setModel(ref(model, "hf-model"))
            .setTimeoutMs(60_000)
            .setDispatchedAt(Instant.now())
            .build();
    Path work = Files.createDirectories(tmp.resolve("work"));
    Path scratch = Files.createDirectories(tmp.resolve("scratch-" + attempt));
    return new StageContext<>(job, p, model, inputs, scratch, work, sink);
  }

  static StageContext.Input input(String node, Path path, String format) {
    return new StageContext.Input(
        node, "input", List.of(new StageContext.Artefact(ref(path, format), path)), Map.of());
  }

  static List<StageContext.Input> dataset(Path tmp, List<TaskExample> data) throws Exception {
    Path file = tmp.resolve("data.jsonl");
    TaskJsonl.write(file, data);
    return List.of(input("data", file, "dataset"));
  }

  static List<TaskExample> data() {
    return List.of(new TaskExample("t", "1+1=", "2"), new TaskExample("t", "2+2=", "4"));
  }

  @Test
  void shouldResumeFromCheckpointWhenRetriedAfterInterruption(@TempDir Path tmp) throws Exception {
    assertThatThrownBy(
            () ->
                new DistillerStage()
                    .run(
                        context(
                            tmp,
                            PARAMS,
                            dataset(tmp, data()),
                            1,
                            (pct, msg, m) -> {
                              if (m.getOrDefault("step", 0.0) >= 3) {
                                throw new IllegalStateException("worker killed");
                              }
                            })))
        .isInstanceOf(Exception.class);
    List<Map<String, Double>> events = new ArrayList<>();
    List<String> messages = new ArrayList<>();
    StageResult result =
        new DistillerStage()
            .run(
                context(
                    tmp,
                    PARAMS,
                    dataset(tmp, data()),
                    2,
                    (pct, msg, m) -> {
                      if (m.containsKey("step")) {
                        events.add(m);
                        messages.add(msg);
                      }
                    }));
    assertThat(events.getFirst())
        .containsEntry("step", 2.0)
        .containsEntry("resumedFrom", 2.0); // checkpoint at 2
    assertThat(messages.getFirst()).isEqualTo("resumed from step 2/6");
    assertThat(events.get(1))
        .containsEntry("step", 3.0)
        .containsKeys("loss", "tokensPerSecond", "etaSeconds");
    assertThat(messages.get(1)).matches("step 3/6 loss=\\S+ tok/s=\\d+ eta=\\d+s");
    assertThat(events.getLast()).containsEntry("step", 6.0);
    Path out = result.outputs().getFirst().path();
    assertThat(out.resolve("config.json")).exists();
    assertThat(out.resolve("model.safetensors")).exists();
    assertThat(out.resolve("tokenizer.json")).exists();
    assertThat(result.metrics())
        .containsEntry("resumedFrom", 2.0)
        .containsEntry("steps", 6.0)
        .containsKeys("trainLoss", "tokens");
    assertThat(result.metrics().get("studentParams"))
        .isLessThan(result.metrics().get("teacherParams"));
  }

  @Test
  void shouldFailFatallyWhenDatasetEmpty(@TempDir Path tmp) {
    assertThatThrownBy(
            () ->
                new DistillerStage()
                    .run(context(tmp, PARAMS, dataset(tmp, List.of()), 1, (pct, msg, m) -> {})))
        .isInstanceOf(StageException.Fatal.class)
        .hasMessageContaining("the dataset is empty");
    assertThatThrownBy(
            () -> new DistillerStage().run(context(tmp, PARAMS, List.of(), 1, (pct, msg, m) -> {})))
        .isInstanceOf(StageException.Fatal.class)
        .hasMessageContaining("the dataset is empty");
  }

  @Test
  void shouldFailFatallyNamingTheDimensionWhenTheStudentIsLargerThanTheTeacher(@TempDir Path tmp) {
    String params = PARAMS.replace("\"hidden\":16", "\"hidden\":64");
    assertThatThrownBy(
            () ->
                new DistillerStage()
                    .run(context(tmp, params, dataset(tmp, data()), 1, (pct, msg, m) -> {})))
        .isInstanceOf(StageException.Fatal.class)
        .hasMessageContaining("student.hidden 64 is larger than the teacher's 32");
  }

  @Test
  void shouldFailFatallyWhenAMisfireFileIsMalformed(@TempDir Path tmp) throws Exception {
    Path dir = Files.createDirectories(tmp.resolve("misfires"));
    Files.writeString(
        dir.resolve("misfires.jsonl"),
        "{\"prompt\":\"1+1=\",\"expected\":\"2\",\"split\":\"train\"}\n" + "not json\n");
    assertThatThrownBy(
            () ->
                new DistillerStage()
                    .run(
                        context(
                            tmp,
                            PARAMS,
                            List.of(input("$run", dir, "misfires-jsonl")),
                            1,
                            (pct, msg, m) -> {})))
        .isInstanceOf(StageException.Fatal.class)
        .hasMessageContaining("misfires.jsonl:2: not JSON");
  }

  @Test
  void shouldScoreTheStudentOnTaskPromptsAndTrainOnMisfires(@TempDir Path tmp) throws Exception {
    Path dir = Files.createDirectories(tmp.resolve("misfires"));
    Files.writeString(
        dir.resolve("misfires.jsonl"),
        """
        {"prompt":"9+9=","output":"17","expected":"18","reason":"WRONG_ANSWER","deploymentId":"d","split":"train"}
        {"prompt":"8+8=","output":"15","expected":"16","reason":"WRONG_ANSWER","deploymentId":"d","split":"heldout"}
        {"prompt":"7+7=","output":"?","expected":null,"reason":"LOW_CONFIDENCE","deploymentId":"d","split":"train"}
        """);
    String params =
        PARAMS.replace(
            "\"seed\":1", "\"seed\":1,\"source\":\"tasks\",\"samples\":20,\"evalSamples\":5");
    StageResult r =
        new DistillerStage()
            .run(
                context(
                    tmp,
                    params,
                    List.of(input("$run", dir, "misfires-jsonl")),
                    1,
                    (pct, msg, m) -> {}));
    assertThat(r.metrics())
        .containsEntry("trainExamples", 21.0)
        .containsEntry("misfireRows", 1.0)
        .containsEntry("traces", 0.0)
        .containsEntry("heldoutExamples", 5.0)
        .containsKeys("studentExactMatch", "teacherExactMatch", "valLoss");
  }

  @Test
  void shouldStartFromAStudentCheckpointInputForRedistillation(@TempDir Path tmp) throws Exception {
    Path deployed = tmp.resolve("deployed");
    LlamaConfig small =
        LlamaConfig.builder()
            .vocabSize(ByteTokenizer.VOCAB_SIZE)
            .hiddenSize(8)
            .intermediateSize(8)
            .numHiddenLayers(1)
            .numAttentionHeads(2)
            .numKeyValueHeads(1)
            .headDim(4)
            .maxPositionEmbeddings(64)
            .build();
    long params;
    try (LlamaModel m = LlamaModel.random(small, 9)) {
      m.save(deployed, DType.F32);
      params = DistillerStage.count(m);
    }
    StageResult r =
        new DistillerStage()
            .run(
                context(
                    tmp,
                    PARAMS,
                    List.of(
                        input("$run", deployed, "hf-checkpoint"), dataset(tmp, data()).getFirst()),
                    1,
                    (pct, msg, m) -> {}));
    assertThat(r.metrics()).containsEntry("studentParams", (double) params);

    String byUri = "{\"studentUri\":\"" + deployed.toUri() + "\",\"steps\":2,\"batch\":2}";
    StageResult u =
        new DistillerStage()
            .run(context(tmp.resolve("u"), byUri, dataset(tmp, data()), 1, (pct, msg, m) -> {}));
    assertThat(u.metrics()).containsEntry("studentParams", (double) params);
  }

  @Test
  void shouldContinuePromptsWithoutAnswersWithTheTeacher(@TempDir Path tmp) throws Exception {
    Path file = tmp.resolve("prompts.jsonl");
    Files.writeString(file, "{\"prompt\":\"copy:ab=\"}\n{\"prompt\":\"1+1=\",\"answer\":\"2\"}\n");
    String params =
        PARAMS.replace("\"seed\":1", "\"seed\":1,\"dataset\":\"" + file + "\",\"maxNewTokens\":4");
    StageResult r =
        new DistillerStage().run(context(tmp, params, List.of(), 1, (pct, msg, m) -> {}));
    assertThat(r.metrics()).containsEntry("traces", 1.0);
  }

  static StageContext<DistillerParams> withScratch(
      StageContext<DistillerParams> ctx, Path tmp, String name, long budget) throws Exception {
    return new StageContext<>(
        ctx.job(),
        ctx.params(),
        ctx.model(),
        ctx.inputs(),
        Files.createDirectories(tmp.resolve(name)),
        ctx.workDir(),
        ctx.progressSink(),
        budget);
  }

  @Test
  void shouldReuseTheTeachersCachedLogitsWhenRerunWithTheSameTeacherAndData(@TempDir Path tmp)
      throws Exception {
    String params = PARAMS.replace("\"seed\":1", "\"seed\":1,\"topK\":16");
    List<String> messages = new ArrayList<>();
    StageResult first =
        new DistillerStage()
            .run(context(tmp, params, dataset(tmp, data()), 1, (pct, msg, m) -> messages.add(msg)));
    assertThat(first.metrics())
        .containsEntry("teacherCacheHit", 0.0)
        .containsEntry("teacherTopK", 16.0)
        .containsEntry("teacherCachePositions", 4.0); // "2</s>", "4</s>"
    assertThat(messages).anyMatch(m -> m.startsWith("teacher_cache=miss"));
    assertThat(Files.list(tmp.resolve("shared").resolve("teacher-logits")))
        .singleElement()
        .satisfies(f -> assertThat(f.toString()).endsWith(".topk"));

    // the same job again (other training settings): read, not recomputed
    FileTrees.delete(tmp.resolve("work").resolve("distill"));
    messages.clear();
    String otherTraining = params.replace("\"lr\":0.01", "\"lr\":0.02,\"temperature\":2.0");
    StageResult again =
        new DistillerStage()
            .run(
                context(
                    tmp,
                    otherTraining,
                    dataset(tmp, data()),
                    2,
                    (pct, msg, m) -> messages.add(msg)));
    assertThat(again.metrics()).containsEntry("teacherCacheHit", 1.0);
    assertThat(messages).anyMatch(m -> m.startsWith("teacher_cache=hit"));
    assertThat(messages).noneMatch(m -> m.startsWith("teacher pass"));

    // another run (its own work dir beside the first, as the store lays them out): read too
    StageContext<DistillerParams> base =
        context(tmp, params, dataset(tmp, data()), 1, (pct, msg, m) -> messages.add(msg));
    StageContext<DistillerParams> otherRun =
        new StageContext<>(
            base.job(),
            base.params(),
            base.model(),
            base.inputs(),
            base.scratch(),
            Files.createDirectories(tmp.resolve("work-of-another-run")),
            base.progressSink(),
            base.memoryBudgetBytes());
    messages.clear();
    assertThat(new DistillerStage().run(otherRun).metrics()).containsEntry("teacherCacheHit", 1.0);
    assertThat(messages).noneMatch(m -> m.startsWith("teacher pass"));

    // another k, or other data: computed anew
    FileTrees.delete(tmp.resolve("work").resolve("distill"));
    StageResult otherK =
        new DistillerStage()
            .run(
                context(
                    tmp,
                    params.replace("\"topK\":16", "\"topK\":8"),
                    dataset(tmp, data()),
                    3,
                    (pct, msg, m) -> {}));
    assertThat(otherK.metrics()).containsEntry("teacherCacheHit", 0.0);
    FileTrees.delete(tmp.resolve("work").resolve("distill"));
    List<TaskExample> more = new ArrayList<>(data());
    more.add(new TaskExample("t", "3+3=", "6"));
    StageResult otherData =
        new DistillerStage().run(context(tmp, params, dataset(tmp, more), 4, (pct, msg, m) -> {}));
    assertThat(otherData.metrics()).containsEntry("teacherCacheHit", 0.0);
    assertThat(Files.list(tmp.resolve("shared").resolve("teacher-logits"))).hasSize(3);
  }

  @Test
  void shouldStreamTheTeacherWhenAsked(@TempDir Path tmp) throws Exception {
    String params =
        PARAMS.replace(
            "\"seed\":1",
            "\"seed\":1,\"streamTeacher\":true,\"slicing\":\"first\",\"source\":\"tasks\","
                + "\"samples\":8,\"evalSamples\":4,\"tasks\":[\"add\"]");
    List<String> messages = new ArrayList<>();
    StageResult r =
        new DistillerStage()
            .run(context(tmp, params, List.of(), 1, (pct, msg, m) -> messages.add(msg)));
    assertThat(r.metrics())
        .containsEntry("teacherStreamed", 1.0)
        .containsEntry("teacherCacheHit", 0.0)
        .containsKeys("teacherExactMatch", "studentExactMatch", "valLoss");
    assertThat(messages).anyMatch(m -> m.matches("teacher pass layer 2/2 \\(1/\\d+, eta \\d+s\\)"));
  }

  @Test
  void shouldRefuseActivationSlicingWhenTheTeacherIsStreamed(@TempDir Path tmp) {
    String params = PARAMS.replace("\"seed\":1", "\"seed\":1,\"streamTeacher\":true");
    assertThatThrownBy(
            () ->
                new DistillerStage()
                    .run(context(tmp, params, dataset(tmp, data()), 1, (pct, msg, m) -> {})))
        .isInstanceOf(StageException.Fatal.class)
        .hasMessageContaining("slicing: activations")
        .hasMessageContaining("use slicing: first");
  }

  @Test
  void shouldRefuseATeacherInMemoryWhenItDoesNotFitTheBudget(@TempDir Path tmp) throws Exception {
    String params = PARAMS.replace("\"seed\":1", "\"seed\":1,\"streamTeacher\":false");
    StageContext<DistillerParams> ctx =
        withScratch(
            context(tmp, params, dataset(tmp, data()), 1, (pct, msg, m) -> {}),
            tmp,
            "small",
            451L << 20);
    assertThatThrownBy(() -> new DistillerStage().run(ctx))
        .isInstanceOf(StageException.Fatal.class)
        .hasMessageContaining("distilling with the teacher in memory")
        .hasMessageMatching("(?s).*needs \\d+\\.\\d MB, this worker has 472\\.9 MB.*");
  }
}
