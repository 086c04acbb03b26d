package io.distillery.feedback;

import io.distillery.schemas.common.ArtefactRef;
import io.distillery.schemas.deployment.DeploymentEvent;
import io.distillery.schemas.deployment.DeploymentRequested;
import io.distillery.schemas.model.ModelRegistered;
import io.distillery.stage.ArtefactFormats;
import io.distillery.stage.ContentHash;
import java.io.IOException;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.nio.file.FileSystemNotFoundException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Instant;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Turns an incident into the re-distillation run that fixes it, from the deployment's lineage (the
 * labels of its last full {@code DeploymentRequested}, see protocol.md): teacher = the original
 * model, student init = the deployed student checkpoint, inputs += the misfire dataset, recipe =
 * the deployment's re-distill recipe, gates from config.
 */
final class RedistillRuns {

  static final String STUDENT_FORMAT = ArtefactFormats.HF_CHECKPOINT;
  private static final Logger LOG = LoggerFactory.getLogger(RedistillRuns.class);

  private final Path defaultRecipe;
  private final Path recipesDir;
  private final Map<String, Double> gates;

  RedistillRuns(Path defaultRecipe, Path recipesDir, Map<String, Double> gates) {
    this.defaultRecipe = defaultRecipe;
    this.recipesDir = recipesDir;
    this.gates = Map.copyOf(gates);
  }

  static RedistillRuns of(FeedbackConfig c) {
    return new RedistillRuns(c.recipe(), c.recipesDir(), c.gates());
  }

  /** Fails before anything is written when the run cannot be built (no teacher, no recipe). */
  Path recipeOf(DeploymentEvent deployment) throws RedistillException {
    String named = labels(deployment).get("redistillRecipe");
    if (named == null || named.isBlank()) {
      if (Files.isRegularFile(defaultRecipe)) {
        return defaultRecipe;
      }
      throw new RedistillException(
          "re-distill recipe "
              + defaultRecipe.toAbsolutePath()
              + " of deployment "
              + deployment.getDeploymentId()
              + " does not exist (no redistillRecipe label; set DISTILLERY_FEEDBACK_RECIPE)");
    }
    List<Path> tried =
        List.of(Path.of(named), recipesDir.resolve(named), recipesDir.resolve(named + ".yaml"));
    for (Path p : tried) {
      if (Files.isRegularFile(p)) {
        return p;
      }
    }
    throw new RedistillException(
        "re-distill recipe '"
            + named
            + "' of deployment "
            + deployment.getDeploymentId()
            + " does not exist (looked at "
            + tried.stream().map(p -> p.toAbsolutePath().toString()).distinct().toList()
            + ")");
  }

  String teacherUri(DeploymentEvent deployment) throws RedistillException {
    DeploymentRequested r = (DeploymentRequested) deployment.getPayload();
    if (r.getTeacher() != null) {
      return r.getTeacher().getUri();
    }
    String label = labels(deployment).get("teacher");
    if (label == null || label.isBlank()) {
      throw new RedistillException(
          "deployment "
              + deployment.getDeploymentId()
              + " names no teacher (DeploymentRequested.teacher and label 'teacher' are empty)");
    }
    return label;
  }

  ModelRegistered build(
      String runId,
      DeploymentEvent deployment,
      MisfireWindow w,
      ArtefactRef dataset,
      Path recipe,
      long now)
      throws RedistillException {
    DeploymentRequested req = (DeploymentRequested) deployment.getPayload();
    Map<String, String> lineage = labels(deployment);
    String recipeText;
    try {
      recipeText = Files.readString(recipe, StandardCharsets.UTF_8);
    } catch (IOException e) {
      throw new RedistillException(
          "cannot read re-distill recipe " + recipe.toAbsolutePath() + ": " + e.getMessage());
    }
    String teacherUri = teacherUri(deployment);
    ArtefactRef student = student(deployment);
    String modelId = lineage.getOrDefault("modelId", deployment.getDeploymentId());
    Map<String, String> labels = new LinkedHashMap<>();
    labels.put("deployment", deployment.getDeploymentId());
    labels.put("modelId", modelId);
    labels.put("trigger", "misfires");
    labels.put("parentRun", lineage.getOrDefault("runId", deployment.getRunId()));
    labels.put("teacherUri", teacherUri);
    labels.put("studentUri", student.getUri());
    labels.put("misfireRate", String.format(Locale.ROOT, "%.6f", w.rate()));
    labels.put("misfires", Long.toString(w.misfires()));
    labels.put("requests", Long.toString(w.requests()));
    labels.put("windowStart", Instant.ofEpochMilli(w.start()).toString());
    labels.put("windowEnd", Instant.ofEpochMilli(w.end()).toString());
    labels.put("redistillRecipe", recipe.toString());
    ArtefactRef teacher = req.getTeacher();
    List<ArtefactRef> inputs = new ArrayList<>(List.of(dataset, student));
    return ModelRegistered.newBuilder()
        .setRunId(runId)
        .setModelId(modelId)
        .setUri(teacherUri)
        .setSha256(teacher == null ? "" : teacher.getSha256())
        .setBytes(teacher == null ? 0 : teacher.getBytes())
        .setRecipe(recipeText)
        .setRecipeRef(recipe.toString())
        .setGates(new LinkedHashMap<>(gates))
        .setOwner("feedback")
        .setInputs(inputs)
        .setLabels(labels)
        .setRegisteredAt(Instant.ofEpochMilli(now))
        .build();
  }

  /**
   * The deployed student: label {@code student}, else the {@code model/} directory of the deployed
   * package.
   */
  static ArtefactRef student(DeploymentEvent deployment) {
    DeploymentRequested req = (DeploymentRequested) deployment.getPayload();
    String uri = labels(deployment).get("student");
    if (uri == null || uri.isBlank()) {
      String pkg = req.getArtefact().getUri();
      uri = (pkg.endsWith("/") ? pkg : pkg + "/") + "model";
    }
    String sha = "";
    long bytes = 0;
    try {
      Path p = Path.of(URI.create(uri));
      if (Files.exists(p)) {
        sha = ContentHash.of(p);
        bytes = ContentHash.sizeOf(p);
      } else {
        LOG.warn(
            "deploymentId={} student={} is not on this machine; its reference carries no hash",
            deployment.getDeploymentId(),
            uri);
      }
    } catch (IOException | IllegalArgumentException | FileSystemNotFoundException e) {
      LOG.warn(
          "deploymentId={} student={} cannot be hashed here: {}",
          deployment.getDeploymentId(),
          uri,
          e.getMessage());
    }
    return ArtefactRef.newBuilder()
        .setUri(uri)
        .setSha256(sha)
        .setBytes(bytes)
        .setFormat(STUDENT_FORMAT)
        .build();
  }

  static Map<String, String> labels(DeploymentEvent deployment) {
    return ((DeploymentRequested) deployment.getPayload()).getLabels();
  }
}
