package io.distillery.platform.tasks;

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
                yield new TaskExample(kind.id(), "rev:" + text + "=", new StringBuilder(text).reverse().toString());
            }
            case RECALL -> recall();
            case SORT -> sort();
        };
    }

    private TaskExample addition() {
        long a = number();
        long b = number();
        return new TaskExample(TaskKind.ADD.id(), a + "+" + b + "=", Long.toString(a + b));
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
        int length = settings.minTextLength() + random.nextInt(settings.maxTextLength() - settings.minTextLength() + 1);
        StringBuilder text = new StringBuilder(length);
        for (int i = 0; i < length; i++) {
            text.append(letter());
        }
        return text.toString();
    }

    private char letter() {
        return settings.alphabet().charAt(random.nextInt(settings.alphabet().length()));
    }

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
            prompt.append('k').append(keys[i]).append('=').append(values[i]).append(';');
        }
        int asked = random.nextInt(pairs);
        prompt.append("?k").append(keys[asked]).append('=');
        return new TaskExample(TaskKind.RECALL.id(), prompt.toString(), String.valueOf(values[asked]));
    }

    private TaskExample sort() {
        int length = settings.minSortLength() + random.nextInt(settings.maxSortLength() - settings.minSortLength() + 1);
        char[] digits = new char[length];
        for (int i = 0; i < length; i++) {
            digits[i] = (char) ('0' + random.nextInt(10));
        }
        String prompt = "sort:" + new String(digits) + "=";
        Arrays.sort(digits);
        return new TaskExample(TaskKind.SORT.id(), prompt, new String(digits));
    }
}
