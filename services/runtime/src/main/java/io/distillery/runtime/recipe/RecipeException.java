package io.distillery.runtime.recipe;

import java.util.List;

/** A recipe that cannot run, with every problem found, each in words a user can act on. */
public final class RecipeException extends Exception {
  private final List<String> problems;

  public RecipeException(List<String> problems) {
    super("invalid recipe: " + String.join("; ", problems));
    this.problems = List.copyOf(problems);
  }

  public List<String> problems() {
    return problems;
  }
}
