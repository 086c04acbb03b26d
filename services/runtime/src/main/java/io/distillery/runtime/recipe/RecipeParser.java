package io.distillery.runtime.recipe;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.databind.node.ObjectNode;
import com.fasterxml.jackson.dataformat.yaml.YAMLFactory;
import io.distillery.runtime.kafka.Topics;
import java.time.Duration;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Collections;
import java.util.Deque;
import java.util.HashMap;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import java.util.function.Predicate;
import java.util.regex.Pattern;

/**
 * Parses a recipe (YAML or JSON) and validates it before a run starts: unknown keys, a stage no
 * worker serves, an {@code after} naming no node, a cycle, params that are not an object, a bad
 * timeout. All problems are reported at once.
 */
public final class RecipeParser {

  public static final int DEFAULT_RETRIES = 2;
  public static final Duration DEFAULT_TIMEOUT = Duration.ofMinutes(10);

  private static final ObjectMapper YAML = new ObjectMapper(new YAMLFactory());
  private static final ObjectMapper JSON =
      new ObjectMapper().enable(SerializationFeature.ORDER_MAP_ENTRIES_BY_KEYS);
  private static final Pattern NODE_NAME = Pattern.compile("[A-Za-z0-9][A-Za-z0-9_-]{0,63}");
  private static final Pattern DURATION = Pattern.compile("(\\d+)(ms|s|m|h)");
  private static final Set<String> RECIPE_KEYS =
      Set.of("name", "stages", "retries", "timeout", "description");
  private static final Set<String> NODE_KEYS =
      Set.of("stage", "after", "params", "retries", "timeout");

  private RecipeParser() {}

  /**
   * @param text the recipe, YAML or JSON
   * @param stageExists whether some worker serves a stage name (e.g. its jobs topic exists)
   */
  public static Recipe parse(String text, Predicate<String> stageExists) throws RecipeException {
    JsonNode root;
    try {
      root = YAML.readTree(text == null ? "" : text);
    } catch (JsonProcessingException e) {
      throw new RecipeException(List.of("not valid YAML/JSON: " + e.getOriginalMessage()));
    }
    List<String> problems = new ArrayList<>();
    if (root == null || !root.isObject()) {
      throw new RecipeException(List.of("a recipe must be an object with 'name' and 'stages'"));
    }
    unknownKeys(root, RECIPE_KEYS, "recipe", problems);
    String name = root.path("name").asText("");
    if (name.isBlank()) {
      problems.add("'name' is missing");
    }
    int retries = intField(root, "retries", DEFAULT_RETRIES, "recipe", problems);
    Duration timeout = duration(root, "timeout", DEFAULT_TIMEOUT, "recipe", problems);
    JsonNode stages = root.path("stages");
    if (!stages.isObject() || stages.isEmpty()) {
      problems.add("'stages' must be a non-empty map of node name -> { stage, after, params }");
      throw new RecipeException(problems);
    }
    Map<String, Recipe.Node> nodes = new LinkedHashMap<>();
    for (Iterator<Map.Entry<String, JsonNode>> it = stages.fields(); it.hasNext(); ) {
      Map.Entry<String, JsonNode> e = it.next();
      String node = e.getKey();
      JsonNode n = e.getValue();
      String where = "node '" + node + "'";
      if (!NODE_NAME.matcher(node).matches()) {
        problems.add(where + ": invalid name (letters, digits, '_' and '-', at most 64)");
      }
      if (!n.isObject()) {
        problems.add(where + ": must be an object with 'stage'");
        continue;
      }
      unknownKeys(n, NODE_KEYS, where, problems);
      String stage = n.path("stage").asText("");
      if (stage.isBlank()) {
        problems.add(where + ": 'stage' is missing");
      } else if (!Topics.STAGE_NAME.matcher(stage).matches()) {
        problems.add(where + ": invalid stage name '" + stage + "'");
      } else if (!stageExists.test(stage)) {
        problems.add(
            where
                + ": no worker serves stage '"
                + stage
                + "' (topic "
                + Topics.JOBS_PREFIX
                + stage
                + " does not exist)");
      }
      List<String> after = new ArrayList<>();
      JsonNode a = n.path("after");
      if (a.isTextual()) {
        after.add(a.asText());
      } else if (a.isArray()) {
        a.forEach(x -> after.add(x.asText()));
      } else if (!a.isMissingNode() && !a.isNull()) {
        problems.add(where + ": 'after' must be a list of node names");
      }
      JsonNode params = n.path("params");
      ObjectNode paramsObj = JSON.createObjectNode();
      if (params.isObject()) {
        paramsObj = (ObjectNode) params;
      } else if (!params.isMissingNode() && !params.isNull()) {
        problems.add(
            where
                + ": 'params' must be an object, not "
                + params.getNodeType().toString().toLowerCase());
      }
      nodes.put(
          node,
          new Recipe.Node(
              node,
              stage,
              after,
              paramsObj,
              intField(n, "retries", retries, where, problems),
              duration(n, "timeout", timeout, where, problems)));
    }
    for (Recipe.Node n : nodes.values()) {
      for (String dep : n.after()) {
        if (dep.equals(n.name())) {
          problems.add("node '" + n.name() + "' lists itself in 'after'");
        } else if (!nodes.containsKey(dep)) {
          problems.add(
              "node '"
                  + n.name()
                  + "' runs after '"
                  + dep
                  + "', which is not a node of this recipe");
        }
      }
    }
    if (problems.isEmpty()) {
      String cycle = findCycle(nodes);
      if (cycle != null) {
        problems.add("the stages form a cycle: " + cycle);
      }
    }
    if (!problems.isEmpty()) {
      throw new RecipeException(problems);
    }
    return new Recipe(name, nodes, retries, timeout);
  }

  /** The recipe as canonical JSON (what RunState carries). */
  public static String toJson(Recipe r) {
    ObjectNode root = JSON.createObjectNode();
    root.put("name", r.name());
    root.put("retries", r.retries());
    root.put("timeout", r.timeout().toMillis() + "ms");
    ObjectNode stages = root.putObject("stages");
    for (Recipe.Node n : r.nodes().values()) {
      ObjectNode o = stages.putObject(n.name());
      o.put("stage", n.stage());
      var after = o.putArray("after");
      n.after().forEach(after::add);
      o.set("params", n.params());
      o.put("retries", n.retries());
      o.put("timeout", n.timeout().toMillis() + "ms");
    }
    try {
      return JSON.writeValueAsString(root);
    } catch (JsonProcessingException e) {
      throw new IllegalStateException(e);
    }
  }

  /** Canonical JSON of params (sorted keys), used for cache keys and job payloads. */
  public static String canonical(JsonNode params) {
    try {
      Object tree = JSON.treeToValue(params, Object.class);
      return JSON.writeValueAsString(tree);
    } catch (JsonProcessingException e) {
      throw new IllegalStateException(e);
    }
  }

  public static Duration parseDuration(String text) {
    var m = DURATION.matcher(text.trim());
    if (!m.matches()) {
      throw new IllegalArgumentException(
          "'" + text + "' is not a duration like 500ms, 30s, 10m or 2h");
    }
    long v = Long.parseLong(m.group(1));
    return switch (m.group(2)) {
      case "ms" -> Duration.ofMillis(v);
      case "s" -> Duration.ofSeconds(v);
      case "m" -> Duration.ofMinutes(v);
      default -> Duration.ofHours(v);
    };
  }

  private static void unknownKeys(
      JsonNode n, Set<String> allowed, String where, List<String> problems) {
    n.fieldNames()
        .forEachRemaining(
            k -> {
              if (!allowed.contains(k)) {
                problems.add(
                    where + ": unknown key '" + k + "' (allowed: " + new TreeSet<>(allowed) + ")");
              }
            });
  }

  private static int intField(
      JsonNode n, String key, int dflt, String where, List<String> problems) {
    JsonNode v = n.path(key);
    if (v.isMissingNode() || v.isNull()) {
      return dflt;
    }
    if (!v.isInt() || v.asInt() < 0 || v.asInt() > 100) {
      problems.add(where + ": '" + key + "' must be a whole number from 0 to 100");
      return dflt;
    }
    return v.asInt();
  }

  private static Duration duration(
      JsonNode n, String key, Duration dflt, String where, List<String> problems) {
    JsonNode v = n.path(key);
    if (v.isMissingNode() || v.isNull()) {
      return dflt;
    }
    try {
      Duration d = parseDuration(v.asText());
      if (d.isZero()) {
        problems.add(where + ": '" + key + "' must be positive");
        return dflt;
      }
      return d;
    } catch (IllegalArgumentException e) {
      problems.add(where + ": " + e.getMessage());
      return dflt;
    }
  }

  /** Depth-first search; returns the first cycle as "a -> b -> a", or null. */
  private static String findCycle(Map<String, Recipe.Node> nodes) {
    Map<String, Integer> state = new HashMap<>(); // 1 = on stack, 2 = done
    for (String start : nodes.keySet()) {
      if (state.containsKey(start)) {
        continue;
      }
      Deque<String> path = new ArrayDeque<>();
      String c = dfs(start, nodes, state, path);
      if (c != null) {
        return c;
      }
    }
    return null;
  }

  private static String dfs(
      String node, Map<String, Recipe.Node> nodes, Map<String, Integer> state, Deque<String> path) {
    state.put(node, 1);
    path.addLast(node);
    for (String dep : nodes.get(node).after()) {
      Integer s = state.get(dep);
      if (s != null && s == 1) {
        List<String> cyc = new ArrayList<>();
        boolean in = false;
        for (String p : path) {
          if (p.equals(dep)) {
            in = true;
          }
          if (in) {
            cyc.add(p);
          }
        }
        cyc.add(dep);
        Collections.reverse(cyc); // show it in execution order (after -> dependent)
        return String.join(" -> ", cyc);
      }
      if (s == null) {
        String c = dfs(dep, nodes, state, path);
        if (c != null) {
          return c;
        }
      }
    }
    path.removeLast();
    state.put(node, 2);
    return null;
  }
}
