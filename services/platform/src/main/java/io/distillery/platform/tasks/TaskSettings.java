package io.distillery.platform.tasks;

/**
 * Difficulty of the generated tasks.
 *
 * @param additionDigits each addend has 1 to this many significant digits, written zero-padded to this width
 * @param minTextLength shortest copy/reverse string
 * @param maxTextLength longest copy/reverse string
 * @param alphabet characters of copy/reverse strings and recall values
 * @param recallPairs key-value pairs per recall prompt (keys {@code k1..k9}, so at most 9)
 * @param minSortLength shortest digit list to sort
 * @param maxSortLength longest digit list to sort
 */
public record TaskSettings(int additionDigits, int minTextLength, int maxTextLength, String alphabet,
        int recallPairs, int minSortLength, int maxSortLength) {

    public TaskSettings {
        if (additionDigits < 1 || additionDigits > 9) {
            throw new IllegalArgumentException("additionDigits must be in [1, 9], got " + additionDigits);
        }
        if (minTextLength < 1 || maxTextLength < minTextLength) {
            throw new IllegalArgumentException("text lengths must satisfy 1 <= minTextLength <= maxTextLength, got "
                    + minTextLength + ".." + maxTextLength);
        }
        if (alphabet == null || alphabet.isEmpty() || alphabet.chars().anyMatch(c -> c < 'a' || c > 'z')) {
            throw new IllegalArgumentException("alphabet must be non-empty lowercase a-z, got '" + alphabet + "'");
        }
        if (recallPairs < 1 || recallPairs > 9) {
            throw new IllegalArgumentException("recallPairs must be in [1, 9], got " + recallPairs);
        }
        if (minSortLength < 1 || maxSortLength < minSortLength) {
            throw new IllegalArgumentException("sort lengths must satisfy 1 <= minSortLength <= maxSortLength, got "
                    + minSortLength + ".." + maxSortLength);
        }
    }

    /** 3-digit addition, 3-6 letter strings, 3 recall pairs, 3-6 digit lists. */
    public static TaskSettings defaults() {
        return new TaskSettings(3, 3, 6, "abcdefghijklmnopqrstuvwxyz", 3, 3, 6);
    }

    public TaskSettings withAdditionDigits(int digits) {
        return new TaskSettings(digits, minTextLength, maxTextLength, alphabet, recallPairs, minSortLength,
                maxSortLength);
    }

    public TaskSettings withTextLength(int min, int max) {
        return new TaskSettings(additionDigits, min, max, alphabet, recallPairs, minSortLength, maxSortLength);
    }

    public TaskSettings withAlphabet(String letters) {
        return new TaskSettings(additionDigits, minTextLength, maxTextLength, letters, recallPairs, minSortLength,
                maxSortLength);
    }

    public TaskSettings withRecallPairs(int pairs) {
        return new TaskSettings(additionDigits, minTextLength, maxTextLength, alphabet, pairs, minSortLength,
                maxSortLength);
    }

    public TaskSettings withSortLength(int min, int max) {
        return new TaskSettings(additionDigits, minTextLength, maxTextLength, alphabet, recallPairs, min, max);
    }
}
