package io.distillery.distiller.data;

import io.distillery.distiller.DistillerParams;
import io.distillery.distiller.train.DistillTrainer;
import io.distillery.model.config.LlamaConfig;
import io.distillery.model.llama.LlamaModel;
import io.distillery.model.llama.SamplingParams;
import io.distillery.model.tasks.TaskExample;
import io.distillery.model.tasks.TaskKind;
import io.distillery.model.tasks.TaskSettings;
import io.distillery.model.tasks.TaskSuite;
import io.distillery.model.tokenizer.ByteTokenizer;
import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Set;

/**
 * The distiller's training set, assembled from every source a job names: task-suite prompts
 * generated in the stage ({@code source: tasks}, with their ground-truth answers), user JSONL
 * prompts (the {@code dataset} param and "dataset" artefacts), and the train split of
 * "misfires-jsonl" artefacts (weighted by {@code misfireWeight}). Prompts without an answer, or
 * every prompt when {@code labels} is false, are continued by the teacher (greedy or sampled): the
 * teacher's trace becomes the target. The held-out sample (validation loss, exact match) is the
 * suite's own test split, or else every tenth labelled user prompt by a hash of its text, capped at
 * {@code evalSamples}; misfire rows always train (the evaluator scores their held-out split).
 *
 * @param train training examples (prompt, target)
 * @param weights sampling weight per training example
 * @param heldout labelled examples kept out of training
 * @param taskPrompts prompts generated from the task suite
 * @param fileRows rows read from user JSONL files
 * @param misfireRows misfire rows used
 * @param misfiresSkipped misfire rows left out (held-out split or no expected answer)
 * @param traces prompts continued by the teacher
 */
public record DistillData(
    List<TaskExample> train,
    double[] weights,
    List<TaskExample> heldout,
    int taskPrompts,
    int fileRows,
    int misfireRows,
    int misfiresSkipped,
    int traces) {

  private static final double SAMPLED_TEMPERATURE = 1.0;
  private static final double SAMPLED_TOP_P = 0.9;

  /** Continues a prompt with the teacher ({@link LlamaModel#generate}). */
  @FunctionalInterface
  public interface Tracer {
    int[] generate(int[] prompt, int maxNewTokens, SamplingParams sampling, int stopTokenId);
  }

  public DistillData {
    train = List.copyOf(train);
    heldout = List.copyOf(heldout);
    weights = weights.clone();
  }

  /**
   * Assembles the data.
   *
   * @param promptFiles user JSONL files (the {@code dataset} param and "dataset" artefacts)
   * @param misfireArtefacts "misfires-jsonl" artefacts (directories holding {@code misfires.jsonl},
   *     or the file)
   * @throws DataFiles.BadDataException for a malformed file
   */
  public static DistillData build(
      DistillerParams p, LlamaModel teacher, List<Path> promptFiles, List<Path> misfireArtefacts)
      throws IOException, DataFiles.BadDataException {
    return build(
        p,
        teacher,
        List.of(TaskKind.values()),
        TaskSettings.defaults(),
        promptFiles,
        misfireArtefacts);
  }

  /**
   * As above, generating {@code taskKinds} with {@code settings} when {@code source} is "tasks".
   */
  public static DistillData build(
      DistillerParams p,
      LlamaModel teacher,
      List<TaskKind> taskKinds,
      TaskSettings settings,
      List<Path> promptFiles,
      List<Path> misfireArtefacts)
      throws IOException, DataFiles.BadDataException {
    return build(
        p,
        teacher.config(),
        teacher::generate,
        taskKinds,
        settings,
        Set.of(),
        promptFiles,
        misfireArtefacts);
  }

  /**
   * As above, with the teacher's traces from {@code tracer} (called only for prompts that need a
   * trace; a teacher that is not held in memory passes one that refuses), and never generating a
   * task prompt of {@code reserved} (the teacher's held-out prompts, which the evaluator scores the
   * student on).
   */
  public static DistillData build(
      DistillerParams p,
      LlamaConfig teacher,
      Tracer tracer,
      List<TaskKind> taskKinds,
      TaskSettings settings,
      Set<String> reserved,
      List<Path> promptFiles,
      List<Path> misfireArtefacts)
      throws IOException, DataFiles.BadDataException {
    List<TaskExample> train = new ArrayList<>();
    List<Double> weights = new ArrayList<>();
    List<TaskExample> heldout = new ArrayList<>();
    List<DataFiles.Row> pending = new ArrayList<>();
    List<Double> pendingWeights = new ArrayList<>();
    int taskPrompts = 0;
    if (DistillerParams.SOURCE_TASKS.equals(p.source())) {
      TaskSuite suite =
          TaskSuite.generate(
              taskKinds, settings, p.samples(), 0, p.evalSamples(), p.seed(), reserved);
      for (TaskExample e : suite.train()) {
        pending.add(new DataFiles.Row(e.task(), e.prompt(), e.answer()));
        pendingWeights.add(1.0);
      }
      heldout.addAll(suite.test());
      taskPrompts = suite.train().size();
    }
    int fileRows = 0;
    boolean splitFiles = heldout.isEmpty();
    for (Path file : promptFiles) {
      for (DataFiles.Row row : DataFiles.prompts(file)) {
        fileRows++;
        if (splitFiles
            && row.answer() != null
            && heldout.size() < p.evalSamples()
            && Math.floorMod(row.prompt().hashCode(), 10) == 0) {
          heldout.add(new TaskExample(row.task(), row.prompt(), row.answer()));
        } else {
          pending.add(row);
          pendingWeights.add(1.0);
        }
      }
    }
    int misfireRows = 0;
    int misfiresSkipped = 0;
    for (Path artefact : misfireArtefacts) {
      DataFiles.Misfires m = DataFiles.misfires(artefact);
      for (DataFiles.Row row : m.rows()) {
        pending.add(row);
        pendingWeights.add(p.misfireWeight());
      }
      misfireRows += m.rows().size();
      misfiresSkipped += m.skipped();
    }
    int traces = 0;
    ByteTokenizer tokenizer = ByteTokenizer.instance();
    int room = Math.min(p.seqLen(), teacher.maxPositionEmbeddings() - p.maxNewTokens()) - 1;
    for (int i = 0; i < pending.size(); i++) {
      DataFiles.Row row = pending.get(i);
      String target = row.answer();
      if (target == null || !p.labels()) {
        if (room < 2) {
          throw new IllegalArgumentException(
              "maxNewTokens "
                  + p.maxNewTokens()
                  + " leaves no room for a prompt in "
                  + "the teacher's "
                  + teacher.maxPositionEmbeddings()
                  + " positions");
        }
        String prompt =
            DistillTrainer.truncate(new TaskExample(row.task(), row.prompt(), ""), room).prompt();
        SamplingParams sampling =
            "sampled".equals(p.decoding())
                ? SamplingParams.sampled(SAMPLED_TEMPERATURE, SAMPLED_TOP_P, p.seed() + i)
                : SamplingParams.greedy();
        int[] generated =
            tracer.generate(
                tokenizer.encode(prompt, true, false),
                p.maxNewTokens(),
                sampling,
                ByteTokenizer.EOS_ID);
        int end = 0;
        while (end < generated.length && generated[end] != ByteTokenizer.EOS_ID) {
          end++;
        }
        target = tokenizer.decode(Arrays.copyOf(generated, end));
        traces++;
      }
      train.add(new TaskExample(row.task(), row.prompt(), target));
      weights.add(pendingWeights.get(i));
    }
    return new DistillData(
        train,
        weights.stream().mapToDouble(Double::doubleValue).toArray(),
        heldout,
        taskPrompts,
        fileRows,
        misfireRows,
        misfiresSkipped,
        traces);
  }
}
