package io.distillery.model.tasks;

import java.util.Arrays;
import java.util.stream.Collectors;

/** The built-in task families; {@link #id()} is the {@code task} field of their examples. */
public enum TaskKind {
  /**
   * {@code "012+345="} to {@code "0357"} (addends zero-padded to the settings' width, the sum one
   * digit wider).
   */
  ADD("add"),
  /** {@code "copy:abc="} to {@code "abc"}. */
  COPY("copy"),
  /** {@code "rev:abc="} to {@code "cba"}. */
  REVERSE("rev"),
  /** {@code "k1a;k2b;?k2"} to {@code "b"}. */
  RECALL("kv"),
  /** {@code "sort:3142="} to {@code "1234"}. */
  SORT("sort");

  private final String id;

  TaskKind(String id) {
    this.id = id;
  }

  public String id() {
    return id;
  }

  /** The kind with this id (or enum name, any case). */
  public static TaskKind of(String name) {
    for (TaskKind kind : values()) {
      if (kind.id.equalsIgnoreCase(name) || kind.name().equalsIgnoreCase(name)) {
        return kind;
      }
    }
    throw new IllegalArgumentException(
        "unknown task '"
            + name
            + "'; known: "
            + Arrays.stream(values()).map(TaskKind::id).collect(Collectors.joining(", ")));
  }
}
