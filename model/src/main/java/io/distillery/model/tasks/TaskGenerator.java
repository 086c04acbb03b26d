package io.distillery.model.tasks;

import java.util.Arrays;
import java.util.Objects;
import java.util.SplittableRandom;

/** Draws random examples of one task kind; the same seed gives the same sequence of examples. */
public final class TaskGenerator {

  private final TaskSettings settings;
  private final SplittableRandom random;

  public TaskGenerator(TaskSettings settings, long seed) {
    this.settings = Objects.requireNonNull(settings, "settings");
    this.random = new SplittableRandom(seed);
  }

  public TaskExample next(TaskKind kind) {
    return switch (kind) {
      case ADD -> addition();
      case COPY -> {
        String text = text();
        yield new TaskExample(kind.id(), "copy:" + text + "=", text);
      }
      case REVERSE -> {
        String text = text();
        yield new TaskExample(
            kind.id(), "rev:" + text + "=", new StringBuilder(text).reverse().toString());
      }
      case RECALL -> recall();
      case SORT -> sort();
    };
  }

  /**
   * Fixed width: both addends zero-padded to {@code additionDigits} and the sum to one digit more
   * ({@code 07+45=} to {@code 052}), so every digit has the same place in every prompt. With
   * unpadded operands the teacher got half of its additions wrong, mostly those with a one-digit
   * operand, whose digits did not line up (see README, teacher).
   */
  private TaskExample addition() {
    long a = number();
    long b = number();
    int width = settings.additionDigits();
    return new TaskExample(
        TaskKind.ADD.id(),
        padded(a, width) + "+" + padded(b, width) + "=",
        padded(a + b, width + 1));
  }

  private static String padded(long value, int width) {
    String digits = Long.toString(value);
    return "0".repeat(Math.max(0, width - digits.length())) + digits;
  }

  /** A number of 1 to {@code additionDigits} digits, the digit count uniform. */
  private long number() {
    int digits = 1 + random.nextInt(settings.additionDigits());
    long low = digits == 1 ? 0 : pow10(digits - 1);
    return low + random.nextLong(pow10(digits) - low);
  }

  private static long pow10(int n) {
    long value = 1;
    for (int i = 0; i < n; i++) {
      value *= 10;
    }
    return value;
  }

  private String text() {
    int length =
        settings.minTextLength()
            + random.nextInt(settings.maxTextLength() - settings.minTextLength() + 1);
    StringBuilder text = new StringBuilder(length);
    for (int i = 0; i < length; i++) {
      text.append(letter());
    }
    return text.toString();
  }

  private char letter() {
    return settings.alphabet().charAt(random.nextInt(settings.alphabet().length()));
  }

  /**
   * {@code k3a;k7b;k1c;?k7} to {@code b}: each value right after its key, and the prompt ends on
   * the asked key, so the answer is the token after the earlier occurrence of the last one (what an
   * induction head does). With a separator between key and value ({@code k7=b;...?k7=}) the model
   * has to match two tokens back, and the teacher learned it late or not at all (chance to 0.86
   * across runs; README, teacher).
   */
  private TaskExample recall() {
    int pairs = settings.recallPairs();
    int[] keys = new int[9];
    for (int i = 0; i < keys.length; i++) {
      keys[i] = i + 1;
    }
    for (int i = 0; i < pairs; i++) {
      int j = i + random.nextInt(keys.length - i);
      int swap = keys[i];
      keys[i] = keys[j];
      keys[j] = swap;
    }
    StringBuilder prompt = new StringBuilder();
    char[] values = new char[pairs];
    for (int i = 0; i < pairs; i++) {
      values[i] = letter();
      prompt.append('k').append(keys[i]).append(values[i]).append(';');
    }
    int asked = random.nextInt(pairs);
    prompt.append("?k").append(keys[asked]);
    return new TaskExample(TaskKind.RECALL.id(), prompt.toString(), String.valueOf(values[asked]));
  }

  private TaskExample sort() {
    int length =
        settings.minSortLength()
            + random.nextInt(settings.maxSortLength() - settings.minSortLength() + 1);
    char[] digits = new char[length];
    for (int i = 0; i < length; i++) {
      digits[i] = (char) ('0' + random.nextInt(10));
    }
    String prompt = "sort:" + new String(digits) + "=";
    Arrays.sort(digits);
    return new TaskExample(TaskKind.SORT.id(), prompt, new String(digits));
  }
}
