package io.distillery.deployer.packaging;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.util.Map;
import org.junit.jupiter.api.Test;

class TemplateTest {

  @Test
  void shouldFailOnAPlaceholderWithoutAValue() {
    Template t = Template.resource("serving-cpu.properties");
    assertThatThrownBy(() -> t.render(Map.of("modelPath", "/m")))
        .isInstanceOf(IllegalStateException.class)
        .hasMessageContaining("${quantizationFormat}");
    assertThat(t.render(Map.of("modelPath", "/m$1\\x", "quantizationFormat", "none")))
        .contains("option.model_id=/m$1\\x\n");
  }

  @Test
  void shouldFailOnAMissingTemplate() {
    assertThatThrownBy(() -> Template.resource("nope.properties"))
        .isInstanceOf(IllegalStateException.class)
        .hasMessageContaining("nope.properties");
  }
}
