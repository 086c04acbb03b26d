package io.distillery.deployer;

import static org.assertj.core.api.Assertions.assertThat;

import io.distillery.runtime.recipe.Recipe;
import io.distillery.runtime.recipe.RecipeParser;
import io.distillery.stage.StageParams;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Set;
import org.junit.jupiter.api.Test;

/** recipes/redistill.yaml (the default re-distill recipe of a deployment) is a valid recipe. */
class RedistillRecipeTest {

  static final Path RECIPE =
      Path.of(System.getProperty("user.dir")).resolve("../../recipes/redistill.yaml").normalize();

  @Test
  void shouldParseTheRedistillRecipeIntoDistillQuantizeEvaluateDeploy() throws Exception {
    Set<String> stages = Set.of("distiller", "calibrator", "quantizer", "evaluator", "deployer");
    Recipe recipe = RecipeParser.parse(Files.readString(RECIPE), stages::contains);
    assertThat(recipe.name()).isEqualTo("redistill");
    assertThat(recipe.nodes().values())
        .extracting(Recipe.Node::stage)
        .containsExactly("distiller", "calibrator", "quantizer", "evaluator", "deployer");
    assertThat(recipe.nodes().get("quant").params().path("scheme").asText()).isEqualTo("w4-gptq");
    assertThat(recipe.nodes().get("deploy").after()).containsExactly("eval");
    DeployerParams deploy =
        StageParams.bind(
            "deployer", recipe.nodes().get("deploy").params().toString(), DeployerParams.class);
    assertThat(deploy.canary()).isTrue();
    assertThat(deploy.redistillRecipe()).isEqualTo(DeployerParams.DEFAULT_REDISTILL_RECIPE);
  }
}
