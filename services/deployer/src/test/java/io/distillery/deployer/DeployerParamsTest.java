package io.distillery.deployer;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.distillery.stage.StageException;
import io.distillery.stage.StageParams;
import org.junit.jupiter.api.Test;

class DeployerParamsTest {

  static DeployerParams bind(String json) throws StageException.Fatal {
    return StageParams.bind("deployer", json, DeployerParams.class);
  }

  @Test
  void shouldDefaultToALocalFullRollout() throws Exception {
    DeployerParams p = bind("{}");
    assertThat(p.target()).isEqualTo("local");
    assertThat(p.deployment()).isNull();
    assertThat(p.canaryPercent()).isEqualTo(100);
    assertThat(p.canary()).isFalse();
    assertThat(p.canaryWindowSeconds()).isEqualTo(300);
    assertThat(p.canaryMinRequests()).isEqualTo(100);
    assertThat(p.rollbackMargin()).isEqualTo(0.05);
    assertThat(p.activeTimeoutSeconds()).isEqualTo(120);
    assertThat(p.redistillRecipe()).isEqualTo("recipes/redistill.yaml");
    assertThat(p.sparseFormat())
        .as("the compressed 2:4 layout where vLLM runs it")
        .isEqualTo("auto");
    assertThat(bind("{\"sparseFormat\":\"sparse-24-bitmask\"}").sparseFormat())
        .isEqualTo("sparse-24-bitmask");
    assertThat(bind("{\"canaryPercent\":20}").canary()).isTrue();
    assertThat(bind("{\"target\":\"gpu\"}").target())
        .as("gpu is the default GPU target")
        .isEqualTo("gpu-vllm");
    assertThat(bind("{\"target\":\"gpu-trtllm\"}").gpu()).isTrue();
    assertThat(p.gpu()).isFalse();
  }

  @Test
  void shouldFailNamingTheParamWhenAValueIsInvalid() {
    String[][] cases = {
      {"{\"target\":\"tpu\"}", "target"},
      {"{\"canaryPercent\":0}", "canaryPercent"},
      {"{\"canaryPercent\":101}", "canaryPercent"},
      {"{\"canaryWindowSeconds\":0}", "canaryWindowSeconds"},
      {"{\"canaryMinRequests\":-1}", "canaryMinRequests"},
      {"{\"rollbackMargin\":1.5}", "rollbackMargin"},
      {"{\"rollbackMargin\":-0.1}", "rollbackMargin"},
      {"{\"activeTimeoutSeconds\":0}", "activeTimeoutSeconds"},
      {"{\"redistillRecipe\":\" \"}", "redistillRecipe"},
      {"{\"deployment\":\"no spaces\"}", "deployment"},
      {"{\"maxInputTokens\":0}", "maxInputTokens"},
      {"{\"maxRollingBatchSize\":0}", "maxRollingBatchSize"},
      {"{\"canaryPercent\":\"many\"}", "canaryPercent"},
      {"{\"canary\":20}", "canary"},
      {
        "{\"sparseFormat\":\"bitmask\"}",
        "sparseFormat: must be one of [auto, dense, sparse-24-bitmask, none]"
      },
    };
    for (String[] c : cases) {
      assertThatThrownBy(() -> bind(c[0]))
          .as(c[0])
          .isInstanceOf(StageException.Fatal.class)
          .hasMessageContaining(c[1]);
    }
  }
}
