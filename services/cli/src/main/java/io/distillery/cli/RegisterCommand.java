package io.distillery.cli;

import io.distillery.runtime.artefact.FileArtefactStore;
import io.distillery.runtime.kafka.KafkaSettings;
import io.distillery.runtime.kafka.Topics;
import io.distillery.runtime.recipe.RecipeParser;
import io.distillery.schemas.common.ArtefactRef;
import io.distillery.schemas.model.ModelRegistered;
import java.io.PrintWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Instant;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.UUID;
import java.util.concurrent.Callable;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.StringSerializer;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

/**
 * Imports a model directory into the artefact store and publishes {@code ModelRegistered}; prints
 * the runId.
 */
@Command(
    name = "register",
    mixinStandardHelpOptions = true,
    description =
        "Register a model (Hugging Face layout directory) with a recipe; prints the runId.")
final class RegisterCommand implements Callable<Integer> {

  @picocli.CommandLine.Spec picocli.CommandLine.Model.CommandSpec spec;

  private PrintWriter out() {
    return spec.commandLine().getOut();
  }

  @Mixin ClusterOptions cluster;

  @Option(
      names = "--model",
      required = true,
      description = "Model directory (config.json + *.safetensors)")
  Path model;

  @Option(names = "--recipe", required = true, description = "Recipe file (YAML or JSON)")
  Path recipe;

  @Option(names = "--model-id", description = "Model id (default: the directory name)")
  String modelId;

  @Option(names = "--gate", description = "A gate, e.g. --gate retention=0.97 (repeatable)")
  Map<String, Double> gates = new LinkedHashMap<>();

  @Option(
      names = "--label",
      description = "A lineage label, e.g. --label owner=search (repeatable)")
  Map<String, String> labels = new LinkedHashMap<>();

  @Option(names = "--owner", defaultValue = "", description = "Owner of the model")
  String owner;

  @Option(names = "--run-id", description = "Run id (default: a random UUID)")
  String runId;

  @Override
  public Integer call() throws Exception {
    if (!Files.isDirectory(model)) {
      throw new IllegalArgumentException("model directory " + model + " does not exist");
    }
    if (!Files.isRegularFile(recipe)) {
      throw new IllegalArgumentException("recipe file " + recipe + " does not exist");
    }
    String recipeText = Files.readString(recipe);
    RecipeParser.parse(
        recipeText,
        stage -> true); // syntax and graph errors now; stage availability at the planner
    KafkaSettings kafka = cluster.kafka();
    FileArtefactStore store = new FileArtefactStore(cluster.storeRoot());
    ArtefactRef ref = store.put(model, "hf-model", true);
    String id = runId != null ? runId : UUID.randomUUID().toString();
    ModelRegistered reg =
        ModelRegistered.newBuilder()
            .setRunId(id)
            .setModelId(
                modelId != null
                    ? modelId
                    : model.toAbsolutePath().normalize().getFileName().toString())
            .setUri(ref.getUri())
            .setSha256(ref.getSha256())
            .setBytes(ref.getBytes())
            .setRecipe(recipeText)
            .setRecipeRef(recipe.getFileName().toString())
            .setGates(new HashMap<>(gates))
            .setOwner(owner)
            .setLabels(new HashMap<>(labels))
            .setRegisteredAt(Instant.now())
            .build();
    Map<String, Object> props = kafka.producer("distillery-cli");
    try (var producer =
        new KafkaProducer<>(props, new StringSerializer(), kafka.serde(ModelRegistered.class))) {
      producer
          .send(new ProducerRecord<>(Topics.MODELS_REGISTERED, reg.getModelId(), reg))
          .get(30, TimeUnit.SECONDS);
    }
    out().println(id);
    return 0;
  }
}
