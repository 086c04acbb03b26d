package io.distillery.runtime.recipe;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.time.Duration;
import org.junit.jupiter.api.Test;

class RecipeParserTest {

  @Test
  void shouldParseTheArchitectureExampleWhenValid() throws RecipeException {
    Recipe r =
        RecipeParser.parse(
            """
        name: llm-int4-or-int8
        stages:
          calib:  { stage: calibrator, params: { samples: 128, seqLen: 256 } }
          q8:     { stage: quantizer, after: [calib], params: { scheme: w8a8-smoothquant, alpha: 0.5 } }
          q4:     { stage: quantizer, after: [calib], params: { scheme: w4-awq, groupSize: 128 } }
          eval:   { stage: evaluator, after: [q8, q4], params: { gates: { retention: 0.97 }, pick: smallest-passing } }
          deploy: { stage: deployer, after: [eval], params: { target: local }, timeout: 30m }
        """,
            s -> true);
    assertThat(r.roots()).extracting(Recipe.Node::name).containsExactly("calib");
    assertThat(r.dependents("calib")).extracting(Recipe.Node::name).containsExactly("q8", "q4");
    assertThat(r.nodes().get("deploy").timeout()).isEqualTo(Duration.ofMinutes(30));
    assertThat(r.nodes().get("q4").params().get("groupSize").asInt()).isEqualTo(128);
    // the canonical JSON parses back to the same graph
    Recipe again = RecipeParser.parse(RecipeParser.toJson(r), s -> true);
    assertThat(again.nodes().keySet()).containsExactlyElementsOf(r.nodes().keySet());
  }

  @Test
  void shouldListEveryProblemWhenRecipeIsBroken() {
    assertThatThrownBy(
            () ->
                RecipeParser.parse(
                    """
        name: broken
        stages:
          a: { stage: hash, params: [1, 2] }
          b: { stage: Bad_Name, after: [nowhere] }
          c: { stage: hash, colour: blue, timeout: soon }
        """,
                    s -> true))
        .isInstanceOf(RecipeException.class)
        .satisfies(
            e ->
                assertThat(((RecipeException) e).problems())
                    .containsExactlyInAnyOrder(
                        "node 'a': 'params' must be an object, not array",
                        "node 'b': invalid stage name 'Bad_Name'",
                        "node 'c': unknown key 'colour' (allowed: [after, params, retries, stage, timeout])",
                        "node 'c': 'soon' is not a duration like 500ms, 30s, 10m or 2h",
                        "node 'b' runs after 'nowhere', which is not a node of this recipe"));
  }

  @Test
  void shouldNameTheCycleWhenStagesLoop() {
    assertThatThrownBy(
            () ->
                RecipeParser.parse(
                    """
        name: loop
        stages:
          x: { stage: hash, after: [y] }
          y: { stage: hash, after: [x] }
        """,
                    s -> true))
        .hasMessageContaining("the stages form a cycle: x -> y -> x");
  }

  @Test
  void shouldRefuseAStageNoWorkerServes() {
    assertThatThrownBy(
            () -> RecipeParser.parse("name: n\nstages:\n  a: { stage: nobody-home }\n", s -> false))
        .hasMessageContaining(
            "no worker serves stage 'nobody-home' (topic distillery.jobs.nobody-home");
  }

  @Test
  void shouldRefuseTextThatIsNotARecipe() {
    assertThatThrownBy(() -> RecipeParser.parse("- just\n- a list\n", s -> true))
        .hasMessageContaining("object");
    assertThatThrownBy(() -> RecipeParser.parse("name: x\nstages: {}\n", s -> true))
        .hasMessageContaining("non-empty");
    assertThatThrownBy(() -> RecipeParser.parse("{ name: [", s -> true))
        .hasMessageContaining("not valid YAML/JSON");
  }
}
