package io.distillery.architecture;

import static com.tngtech.archunit.lang.syntax.ArchRuleDefinition.classes;
import static com.tngtech.archunit.lang.syntax.ArchRuleDefinition.noClasses;

import com.tngtech.archunit.core.domain.JavaClasses;
import com.tngtech.archunit.core.importer.ClassFileImporter;
import com.tngtech.archunit.core.importer.ImportOption;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * The module layering of docs/architecture.md, checked on the compiled main classes of every
 * module: {@code schemas <- stage-api <- runtime <- services}, the model core beside the runtime
 * and used only by the services that run models, workers talking to each other only through topics.
 */
class LayeringTest {

  /** Worker modules: each is one stage; they never see each other. */
  static final List<String> WORKERS =
      List.of("calibrator", "pruner", "distiller", "quantizer", "evaluator", "deployer");

  /** Services that are not workers; they never see a worker either. */
  static final List<String> SERVICES = List.of("planner", "feedback", "serving");

  private static JavaClasses main;

  @BeforeAll
  static void importMainClasses() {
    main =
        new ClassFileImporter()
            .withImportOption(ImportOption.Predefined.DO_NOT_INCLUDE_TESTS)
            .importPackages("io.distillery");
  }

  @Test
  void stageApiDependsOnSchemasAndTheJdkOnly() {
    classes()
        .that()
        .resideInAPackage("io.distillery.stage..")
        .should()
        .onlyDependOnClassesThat()
        .resideInAnyPackage(
            "io.distillery.stage..", "io.distillery.schemas..", "java..", "com.fasterxml.jackson..")
        .because(
            "a plugin author compiles against stage-api alone (Jackson binds params; schemas' Avro brings it)")
        .check(main);
  }

  @Test
  void runtimeNeverUsesTheModelCore() {
    noClasses()
        .that()
        .resideInAPackage("io.distillery.runtime..")
        .should()
        .dependOnClassesThat()
        .resideInAnyPackage(onlyServicesAnd("io.distillery.model.."))
        .because("the planner, the feedback service and plugins must not carry DJL and libtorch")
        .check(main);
  }

  @Test
  void modelCoreNeverUsesTheRuntimeOrAService() {
    noClasses()
        .that()
        .resideInAPackage("io.distillery.model..")
        .should()
        .dependOnClassesThat()
        .resideInAnyPackage(onlyServicesAnd("io.distillery.runtime.."))
        .because("the model core is a library: it runs tensors, not Kafka")
        .check(main);
  }

  @Test
  void planAndFeedbackNeverRunModels() {
    noClasses()
        .that()
        .resideInAnyPackage("io.distillery.planner..", "io.distillery.feedback..")
        .should()
        .dependOnClassesThat()
        .resideInAPackage("io.distillery.model..")
        .check(main);
  }

  @Test
  void theExamplePluginNeedsOnlyTheStageApi() {
    classes()
        .that()
        .resideInAPackage("io.distillery.examples..")
        .should()
        .onlyDependOnClassesThat()
        .resideInAnyPackage(
            "io.distillery.examples..",
            "io.distillery.stage..",
            "io.distillery.schemas..",
            "java..")
        .check(main);
  }

  static List<String> servicesAndWorkers() {
    var all = new ArrayList<>(WORKERS);
    all.addAll(SERVICES);
    return all;
  }

  @ParameterizedTest(name = "{0} uses no other worker or service")
  @MethodSource("servicesAndWorkers")
  void servicesTalkThroughTopicsOnly(String service) {
    String[] others =
        servicesAndWorkers().stream()
            .filter(s -> !s.equals(service))
            .map(s -> "io.distillery." + s + "..")
            .toArray(String[]::new);
    noClasses()
        .that()
        .resideInAPackage("io.distillery." + service + "..")
        .should()
        .dependOnClassesThat()
        .resideInAnyPackage(others)
        .because(
            "workers and services talk through Kafka topics; shared code belongs in a shared module")
        .check(main);
  }

  private static String[] onlyServicesAnd(String extra) {
    var packages = new ArrayList<String>();
    packages.add(extra);
    servicesAndWorkers().forEach(s -> packages.add("io.distillery." + s + ".."));
    packages.add("io.distillery.cli..");
    return packages.toArray(String[]::new);
  }
}
