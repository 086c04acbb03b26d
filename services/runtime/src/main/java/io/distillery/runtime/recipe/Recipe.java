package io.distillery.runtime.recipe;

import com.fasterxml.jackson.databind.node.ObjectNode;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * A validated recipe: a DAG of nodes, each running one stage after the nodes it names. Built only
 * by {@link RecipeParser}, so a {@code Recipe} in hand has no cycle, no dangling {@code after} and
 * only known stages.
 */
public record Recipe(String name, Map<String, Node> nodes, int retries, Duration timeout) {

  public Recipe {
    nodes = Collections.unmodifiableMap(new LinkedHashMap<>(nodes));
  }

  /**
   * One node: {@code stage} is the worker topic suffix; {@code params} is passed to the stage as
   * JSON.
   */
  public record Node(
      String name,
      String stage,
      List<String> after,
      ObjectNode params,
      int retries,
      Duration timeout) {
    public Node {
      after = List.copyOf(after);
    }
  }

  /** Nodes with no {@code after}: dispatched when the run starts. */
  public List<Node> roots() {
    return nodes.values().stream().filter(n -> n.after().isEmpty()).toList();
  }

  /** Nodes that list {@code node} in their {@code after}. */
  public List<Node> dependents(String node) {
    List<Node> out = new ArrayList<>();
    for (Node n : nodes.values()) {
      if (n.after().contains(node)) {
        out.add(n);
      }
    }
    return out;
  }
}
