package io.distillery.cli;

import static org.assertj.core.api.Assertions.assertThat;

import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class UpCommandTest {

  @Test
  void shouldNameTheDeploymentOfTheDemoRecipesDeployerWhenAskingTheServingNode(@TempDir Path dir)
      throws Exception {
    // a node that also serves an earlier run's deployment answers 400 "model is required" to a
    // request without one: the demo's own request names the deployment its recipe rolls out
    Path recipe = dir.resolve("demo.yaml");
    Files.writeString(
        recipe,
        """
        name: demo
        stages:
          q8:     { stage: quantizer, params: { scheme: w8-rtn } }
          deploy: { stage: deployer, after: [q8], params: { deployment: demo, target: local } }
        """);
    assertThat(UpCommand.deploymentOf(recipe)).isEqualTo("demo");

    Files.writeString(
        recipe,
        """
        name: no-deployer
        stages:
          q8: { stage: quantizer, params: { scheme: w8-rtn } }
        """);
    assertThat(UpCommand.deploymentOf(recipe)).isNull();
    assertThat(UpCommand.deploymentOf(dir.resolve("missing.yaml"))).isNull();
  }
}
