package io.distillery.model.tasks;

import java.util.ArrayList;
import java.util.Collections;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.Set;
import java.util.SplittableRandom;

/**
 * Train, validation and test examples whose prompts are pairwise disjoint, so a score on the test
 * split measures generalisation rather than memorisation. Generated suites are deterministic for a
 * seed.
 */
public record TaskSuite(
    List<TaskExample> train, List<TaskExample> validation, List<TaskExample> test) {

  public TaskSuite {
    train = List.copyOf(train);
    validation = List.copyOf(validation);
    test = List.copyOf(test);
    Set<String> seen = new HashSet<>();
    for (List<TaskExample> split : List.of(train, validation, test)) {
      Set<String> inSplit = new HashSet<>();
      for (TaskExample example : split) {
        if (inSplit.add(example.prompt()) && !seen.add(example.prompt())) {
          throw new IllegalArgumentException(
              "prompt '" + example.prompt() + "' occurs in more than one split");
        }
      }
    }
  }

  /**
   * Generates {@code kinds} in turn (the same number of each, up to rounding), filling test, then
   * validation, then train with prompts not drawn before.
   *
   * @throws IllegalArgumentException when the settings allow too few distinct prompts
   */
  public static TaskSuite generate(
      List<TaskKind> kinds,
      TaskSettings settings,
      int trainSize,
      int validationSize,
      int testSize,
      long seed) {
    return generate(kinds, kinds, settings, trainSize, validationSize, testSize, seed);
  }

  /**
   * As {@link #generate(List, TaskSettings, int, int, int, long)}, but the train split cycles
   * through {@code trainMix} instead: naming a kind twice there gives it twice the training
   * examples, while validation and test keep {@code kinds} in equal numbers, so scores stay
   * comparable.
   */
  public static TaskSuite generate(
      List<TaskKind> kinds,
      List<TaskKind> trainMix,
      TaskSettings settings,
      int trainSize,
      int validationSize,
      int testSize,
      long seed) {
    return generate(
        kinds, trainMix, settings, trainSize, validationSize, testSize, seed, true, Set.of());
  }

  /**
   * As {@link #generate(List, TaskSettings, int, int, int, long)}, never drawing a prompt of {@code
   * reserved} into any split: e.g. a teacher's held-out prompts, which a student trained on this
   * suite is later scored on.
   */
  public static TaskSuite generate(
      List<TaskKind> kinds,
      TaskSettings settings,
      int trainSize,
      int validationSize,
      int testSize,
      long seed,
      Set<String> reserved) {
    return generate(
        kinds, kinds, settings, trainSize, validationSize, testSize, seed, true, reserved);
  }

  /**
   * As {@link #generate(List, List, TaskSettings, int, int, int, long)}, except that the train
   * split is drawn independently from the task distribution: a prompt may occur in it more than
   * once (never one of validation or test), so it can be larger than the number of distinct
   * prompts. For a trainer that should see fresh examples at every step rather than a small set
   * many times over.
   */
  public static TaskSuite sample(
      List<TaskKind> kinds,
      List<TaskKind> trainMix,
      TaskSettings settings,
      int trainSize,
      int validationSize,
      int testSize,
      long seed) {
    return generate(
        kinds, trainMix, settings, trainSize, validationSize, testSize, seed, false, Set.of());
  }

  private static TaskSuite generate(
      List<TaskKind> kinds,
      List<TaskKind> trainMix,
      TaskSettings settings,
      int trainSize,
      int validationSize,
      int testSize,
      long seed,
      boolean distinctTrain,
      Set<String> reserved) {
    if (kinds.isEmpty() || trainMix.isEmpty()) {
      throw new IllegalArgumentException("at least one task kind is needed");
    }
    if (trainSize < 0 || validationSize < 0 || testSize < 0) {
      throw new IllegalArgumentException("split sizes must not be negative");
    }
    TaskGenerator generator = new TaskGenerator(settings, seed);
    Set<String> seen = new HashSet<>(reserved);
    List<TaskExample> test = fill(generator, kinds, testSize, seen, true);
    List<TaskExample> validation = fill(generator, kinds, validationSize, seen, true);
    List<TaskExample> train = fill(generator, trainMix, trainSize, seen, distinctTrain);
    return new TaskSuite(train, validation, test);
  }

  /**
   * {@code size} examples cycling through {@code kinds}, none with a prompt in {@code seen}; when
   * {@code distinct}, none twice either (each is added to {@code seen}).
   */
  private static List<TaskExample> fill(
      TaskGenerator generator, List<TaskKind> kinds, int size, Set<String> seen, boolean distinct) {
    List<TaskExample> examples = new ArrayList<>(size);
    int kind = 0;
    for (int i = 0; i < size; i++) {
      TaskKind task = kinds.get(kind++ % kinds.size());
      int attempts = 0;
      while (true) {
        TaskExample example = generator.next(task);
        if (distinct ? seen.add(example.prompt()) : !seen.contains(example.prompt())) {
          examples.add(example);
          break;
        }
        if (++attempts > 10_000) {
          throw new IllegalArgumentException(
              "task '"
                  + task.id()
                  + "' ran out of distinct prompts after "
                  + seen.size()
                  + " in all; make it harder or ask for fewer examples");
        }
      }
    }
    return examples;
  }

  /**
   * Splits user-supplied examples: duplicates by prompt are dropped (first kept), the rest shuffled
   * with {@code seed} and cut into test, validation and train.
   */
  public static TaskSuite split(
      List<TaskExample> examples, double validationFraction, double testFraction, long seed) {
    if (validationFraction < 0 || testFraction < 0 || validationFraction + testFraction > 1) {
      throw new IllegalArgumentException("fractions must be >= 0 and sum to at most 1");
    }
    Map<String, TaskExample> unique = new LinkedHashMap<>();
    for (TaskExample example : examples) {
      unique.putIfAbsent(example.prompt(), example);
    }
    List<TaskExample> shuffled = new ArrayList<>(unique.values());
    Collections.shuffle(shuffled, new Random(new SplittableRandom(seed).nextLong()));
    int testSize = (int) Math.round(shuffled.size() * testFraction);
    int validationSize = (int) Math.round(shuffled.size() * validationFraction);
    return new TaskSuite(
        shuffled.subList(testSize + validationSize, shuffled.size()),
        shuffled.subList(testSize, testSize + validationSize),
        shuffled.subList(0, testSize));
  }
}
