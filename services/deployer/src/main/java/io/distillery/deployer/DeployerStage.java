package io.distillery.deployer;

import io.distillery.deployer.packaging.DjlServingPackage;
import io.distillery.deployer.packaging.SparseFormat;
import io.distillery.deployer.rollout.DeploymentChannel;
import io.distillery.deployer.rollout.KafkaDeploymentChannel;
import io.distillery.deployer.rollout.Rollout;
import io.distillery.model.CheckpointException;
import io.distillery.runtime.artefact.ArtefactStore;
import io.distillery.runtime.worker.HostServices;
import io.distillery.schemas.common.ArtefactRef;
import io.distillery.schemas.job.StageJob;
import io.distillery.stage.ArtefactFormats;
import io.distillery.stage.Stage;
import io.distillery.stage.StageContext;
import io.distillery.stage.StageException;
import io.distillery.stage.StagePlugin;
import io.distillery.stage.StageResult;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Clock;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.function.Function;
import org.apache.kafka.common.KafkaException;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The deployer worker's stage: packages the chosen checkpoint as a {@value
 * DjlServingPackage#FORMAT} directory (see {@link DjlServingPackage}), puts it in the artefact
 * store, and rolls it out to the serving nodes of the deployment through {@code
 * distillery.deployments} (see {@link Rollout}): canary first when asked, then full. A rolled-back
 * canary ends the run REJECTED. Not cacheable: a deployment is an effect, not a function of its
 * inputs.
 *
 * <p>The checkpoint is the first checkpoint-like artefact ({@link #CHECKPOINT_FORMATS}) of the
 * upstream nodes, in the order of the recipe's {@code after} list; with no upstream node, the run's
 * own model is deployed.
 */
@StagePlugin(
    name = "deployer",
    params = DeployerParams.class,
    cacheable = false,
    description =
        "package the chosen checkpoint for DJL Serving (CPU, LMI vLLM) or TensorRT-LLM and roll it out, "
            + "canary first")
public final class DeployerStage implements Stage<DeployerParams>, HostServices.Aware {

  /**
   * Formats of Hugging Face checkpoint directories that stages emit (the pruner and distiller, the
   * quantizer); any other directory artefact with a config.json and safetensors weights counts as
   * one too.
   */
  public static final Set<String> CHECKPOINT_FORMATS = ArtefactFormats.CHECKPOINTS;

  public static final String EVAL_REPORT_FORMAT = ArtefactFormats.EVAL_REPORT;
  static final String RUN_INPUT_NODE = "$run";

  private static final Logger LOG = LoggerFactory.getLogger(DeployerStage.class);

  private volatile ArtefactStore store;
  private volatile Function<String, DeploymentChannel> channels;
  private final Clock clock;

  /**
   * For the ServiceLoader: the store and the Kafka channel come from the worker host ({@link
   * #attach}).
   */
  public DeployerStage() {
    this(null, null, Clock.systemUTC());
  }

  /** The seam for tests: a store and a channel per deployment id. */
  DeployerStage(ArtefactStore store, Function<String, DeploymentChannel> channels, Clock clock) {
    this.store = store;
    this.channels = channels;
    this.clock = clock;
  }

  @Override
  public void attach(HostServices host) {
    this.store = host.store();
    this.channels =
        deployment ->
            new KafkaDeploymentChannel(
                host.kafka(), deployment, host.workerId() + "-deployer-" + deployment);
  }

  @Override
  public StageResult run(StageContext<DeployerParams> ctx)
      throws StageException, InterruptedException {
    if (store == null || channels == null) {
      throw StageException.fatal(
          "the deployer runs inside a worker host (it needs the host's artefact store and "
              + "Kafka connection); it was started without one");
    }
    DeployerParams p = ctx.params();
    StageJob job = ctx.job();
    String deployment = deploymentId(p, job.getLabels());
    StageContext.Artefact checkpoint = chooseCheckpoint(ctx);
    ctx.progress(1, "packaging " + checkpoint.ref().getUri() + " for deployment " + deployment);

    Path pkg = ctx.scratch().resolve("package");
    ArtefactRef modelRef;
    ArtefactRef pkgRef;
    DjlServingPackage.Written written;
    SparseFormat.Decision sparse;
    try {
      Path model = DjlServingPackage.assembleModel(checkpoint.path(), ctx.model(), pkg);
      sparse = SparseFormat.apply(model, p, ctx.memoryBudgetBytes());
      if (sparse.format() != null) {
        ctx.progress(
            3,
            "2:4 weights stored " + sparse.format() + " (sparseFormat " + p.sparseFormat() + ")");
      }
      modelRef = store.put(model, DjlServingPackage.MODEL_FORMAT, true);
      ctx.progress(5, "stored model " + modelRef.getSha256().substring(0, 12));
      List<StageContext.Artefact> reports =
          ctx.inputs().stream()
              .filter(i -> !i.node().equals(RUN_INPUT_NODE))
              .flatMap(i -> i.artefacts().stream())
              .filter(a -> a.ref().getFormat().equals(EVAL_REPORT_FORMAT))
              .toList();
      if (!reports.isEmpty()) {
        DjlServingPackage.copyReport(reports.getFirst().path(), pkg);
      }
      String parentNode =
          ctx.inputs().stream()
              .filter(i -> i.artefacts().contains(checkpoint))
              .map(StageContext.Input::node)
              .findFirst()
              .orElse(RUN_INPUT_NODE);
      written =
          DjlServingPackage.write(
              pkg,
              new DjlServingPackage.Spec(
                  deployment,
                  job.getRunId(),
                  job.getJobId(),
                  job.getNode(),
                  parentNode,
                  checkpoint.ref(),
                  job.getModel(),
                  modelRef,
                  p));
      pkgRef = store.put(pkg, DjlServingPackage.FORMAT, true);
    } catch (IllegalArgumentException | CheckpointException e) {
      throw StageException.fatal(
          "cannot package "
              + checkpoint.ref().getUri()
              + " for deployment "
              + deployment
              + ": "
              + e.getMessage(),
          e);
    } catch (IOException e) {
      throw StageException.retryable("cannot write the djl-serving package: " + e.getMessage(), e);
    }
    List<String> warnings = new ArrayList<>(sparse.warnings());
    warnings.addAll(written.warnings());
    for (String warning : warnings) {
      LOG.warn(
          "target warning stage=deployer runId={} jobId={} target={}: {}",
          job.getRunId(),
          job.getJobId(),
          p.target(),
          warning);
      ctx.progress(10, "warning: " + warning);
    }
    LOG.info(
        "packaged stage=deployer runId={} jobId={} deployment={} package={} quantization={} target={}",
        job.getRunId(),
        job.getJobId(),
        deployment,
        pkgRef.getSha256(),
        written.quantization().scheme(),
        p.target());
    ctx.progress(
        10,
        "packaged "
            + pkgRef.getSha256().substring(0, 12)
            + " ("
            + written.quantization().scheme()
            + "); rolling out to deployment "
            + deployment);

    Map<String, String> labels = new LinkedHashMap<>();
    labels.put("runId", job.getRunId());
    String modelId = job.getLabels().get("modelId");
    if (modelId != null) {
      labels.put("modelId", modelId);
    }
    labels.put(
        "student",
        pkgRef.getUri() + (pkgRef.getUri().endsWith("/") ? "" : "/") + DjlServingPackage.MODEL_DIR);
    labels.put("redistillRecipe", p.redistillRecipe());
    labels.put("teacher", job.getModel().getUri());
    Rollout.Plan plan =
        new Rollout.Plan(
            deployment,
            job.getRunId(),
            pkgRef,
            p.target(),
            p.canaryPercent(),
            job.getModel().getUri().isBlank() ? null : job.getModel(),
            labels,
            Duration.ofSeconds(p.activeTimeoutSeconds()),
            Duration.ofSeconds(p.canaryWindowSeconds()),
            p.canaryMinRequests(),
            p.rollbackMargin());
    Rollout.Outcome outcome;
    try (DeploymentChannel channel = openChannel(deployment)) {
      outcome = new Rollout(channel, clock, ctx.progressSink()).run(plan);
    }
    Map<String, Double> metrics = new LinkedHashMap<>(outcome.metrics());
    metrics.put("packageBytes", (double) pkgRef.getBytes());
    metrics.put("modelBytes", (double) modelRef.getBytes());
    metrics.put("maxInputTokens", (double) written.maxInputTokens());
    metrics.put("maxOutputTokens", (double) written.maxOutputTokens());
    ctx.progress(
        100,
        "deployment "
            + deployment
            + " serves "
            + pkgRef.getSha256().substring(0, 12)
            + " on "
            + outcome.nodes().size()
            + " node(s)");
    // the package is in the store already (the request carries its reference); the host stores the
    // same content
    // again, finds it present and drops this copy
    return StageResult.of(List.of(new StageResult.Output(pkg, DjlServingPackage.FORMAT)), metrics);
  }

  private DeploymentChannel openChannel(String deployment) throws StageException {
    try {
      return channels.apply(deployment);
    } catch (KafkaException | IllegalStateException e) {
      // the broker or the registry is unreachable, or a topic could not be created: worth another
      // attempt
      throw StageException.retryable(
          "cannot open the deployment topics for " + deployment + ": " + e, e);
    }
  }

  /** params.deployment, else the run's label {@code deployment}, else a fatal error naming both. */
  static String deploymentId(DeployerParams p, Map<String, String> labels) throws StageException {
    if (p.deployment() != null) {
      return p.deployment();
    }
    String label = labels.get("deployment");
    if (label == null || label.isBlank()) {
      throw StageException.fatal(
          "no deployment id: set the deployer's param 'deployment' or the run's label "
              + "'deployment' (e.g. distillery register --label deployment=my-model)");
    }
    if (!DeployerParams.DEPLOYMENT_ID.matcher(label).matches()) {
      throw StageException.fatal(
          "the run's label 'deployment' = '" + label + "' is not a valid deployment id");
    }
    return label;
  }

  /**
   * A known checkpoint format, or any other directory artefact holding a config.json and
   * safetensors weights.
   */
  static boolean checkpointLike(StageContext.Artefact a) {
    if (CHECKPOINT_FORMATS.contains(a.ref().getFormat())) {
      return true;
    }
    if (a.ref().getFormat().equals(EVAL_REPORT_FORMAT)
        || !Files.isDirectory(a.path())
        || !Files.isRegularFile(a.path().resolve("config.json"))) {
      return false;
    }
    try (var files = Files.list(a.path())) {
      return files.anyMatch(f -> f.getFileName().toString().endsWith(".safetensors"));
    } catch (IOException e) {
      return false; // unreadable: not something we could package anyway
    }
  }

  /**
   * The first checkpoint of the upstream nodes; the run's model when the deployer has no upstream
   * node.
   */
  static StageContext.Artefact chooseCheckpoint(StageContext<DeployerParams> ctx)
      throws StageException {
    List<StageContext.Input> upstream =
        ctx.inputs().stream().filter(i -> !i.node().equals(RUN_INPUT_NODE)).toList();
    for (StageContext.Input in : upstream) {
      for (StageContext.Artefact a : in.artefacts()) {
        if (checkpointLike(a)) {
          return a;
        }
      }
    }
    if (!upstream.isEmpty()) {
      throw StageException.fatal(
          "no checkpoint among the outputs of "
              + upstream.stream().map(StageContext.Input::node).toList()
              + ": expected an artefact of format "
              + CHECKPOINT_FORMATS
              + " (or a directory with config.json and *.safetensors), got "
              + upstream.stream()
                  .flatMap(i -> i.artefacts().stream())
                  .map(a -> a.ref().getFormat())
                  .toList());
    }
    if (ctx.model() == null || !Files.isDirectory(ctx.model())) {
      throw StageException.fatal(
          "nothing to deploy: the deployer has no upstream node and the run has no model");
    }
    return new StageContext.Artefact(ctx.job().getModel(), ctx.model());
  }
}
