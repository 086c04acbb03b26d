package io.distillery.model.tasks;

import java.util.Objects;

/**
 * One prompt with its exact answer, e.g. {@code ("add", "012+345=", "0357")}. The model sees {@code
 * <s> prompt} and must produce {@code answer </s>}.
 */
public record TaskExample(String task, String prompt, String answer) {

  public TaskExample {
    Objects.requireNonNull(task, "task");
    Objects.requireNonNull(prompt, "prompt");
    Objects.requireNonNull(answer, "answer");
    if (prompt.isEmpty()) {
      throw new IllegalArgumentException("prompt must not be empty");
    }
  }
}
