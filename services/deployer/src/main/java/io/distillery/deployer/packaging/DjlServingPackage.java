package io.distillery.deployer.packaging;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import io.distillery.deployer.DeployerParams;
import io.distillery.model.config.LlamaConfig;
import io.distillery.schemas.common.ArtefactRef;
import io.distillery.stage.ArtefactFormats;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.FileSystemException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.stream.Collectors;
import java.util.stream.Stream;

/**
 * The deployer's output format {@value #FORMAT}: a directory that DJL Serving loads as one model,
 * and that Distillery's serving nodes load from {@code model/}.
 *
 * <pre>
 * model/                   the chosen Hugging Face checkpoint (config.json, *.safetensors) and its tokenizer files
 * serving.properties       local CPU target (DJL Serving, Python engine, Hugging Face handler)
 * gpu/serving.properties   GPU target gpu-vllm (DJL Serving LMI with vLLM, which reads compressed-tensors itself)
 * k8s/deployment.yaml      ConfigMap (the GPU serving.properties) + Deployment on one nvidia.com/gpu
 * trtllm/, README.md       target gpu-trtllm only: the ModelOpt-style export TensorRT-LLM loads ({@link TrtLlmExport})
 *                          and the trtllm-serve command
 * manifest.json            lineage: parent artefact, run, params, quantization, target warnings
 * report.json              the evaluator's report, when the chosen checkpoint came with one
 * </pre>
 *
 * A GPU target checks its engine's rules first ({@link GpuTargets}): a checkpoint it cannot run is
 * refused before anything is written, one that only fits a slow kernel is packaged with warnings.
 * The templates live next to this class as resources and cite the DJL Serving documentation and
 * sources they follow.
 */
public final class DjlServingPackage {

  public static final String FORMAT = ArtefactFormats.DJL_SERVING;

  /**
   * The format of {@code model/} when it is stored on its own (the Kubernetes manifest mounts it by
   * hash).
   */
  public static final String MODEL_FORMAT = ArtefactFormats.HF_CHECKPOINT;

  /** DJL LMI v20 (DJL Serving 0.36.0, vLLM 0.15.1), serving/docs/lmi/release_notes.md. */
  public static final String IMAGE =
      "763104351884.dkr.ecr.us-west-2.amazonaws.com/djl-inference:0.36.0-lmi20.0.0-cu128-v1.0";

  /** Where LMI containers look for the model (serving.properties at its root). */
  public static final String MOUNT = "/opt/ml/model";

  /** The PersistentVolumeClaim holding the artefact store in the Kubernetes deployment (k8s/). */
  public static final String STORE_CLAIM = "distillery-store";

  public static final String MODEL_DIR = "model";
  public static final String CPU_PROPERTIES = "serving.properties";
  public static final String GPU_PROPERTIES = "gpu/serving.properties";
  public static final String K8S_DEPLOYMENT = "k8s/deployment.yaml";
  public static final String MANIFEST = "manifest.json";
  public static final String REPORT = "report.json";
  public static final String README = "README.md";
  static final List<String> TOKENIZER_FILES =
      List.of(
          "tokenizer.json",
          "tokenizer_config.json",
          "special_tokens_map.json",
          "tokenizer.model",
          "vocab.json",
          "merges.txt",
          "generation_config.json");
  static final int READINESS_MINUTES = 30;

  private static final ObjectMapper JSON =
      new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT);

  private DjlServingPackage() {}

  /** What goes into the package besides the model files. */
  public record Spec(
      String deployment,
      String runId,
      String jobId,
      String node,
      String parentNode,
      ArtefactRef parent,
      ArtefactRef teacher,
      ArtefactRef model,
      DeployerParams params) {}

  /**
   * What {@link #write} derived from the checkpoint, and the target's warnings (a slower kernel, a
   * GPU class).
   */
  public record Written(
      CheckpointQuantization quantization,
      int maxInputTokens,
      int maxOutputTokens,
      List<String> warnings) {}

  /**
   * Fills {@code packageDir/model} with the checkpoint's files, adding the tokenizer files of
   * {@code tokenizerSource} (the run's model) that the checkpoint lacks: quantized and pruned
   * checkpoints carry weights and config only. Files are hard-linked where the file system allows
   * (store artefacts are immutable), else copied.
   *
   * @throws IllegalArgumentException when the checkpoint is no directory with a config.json, or no
   *     tokenizer is found
   */
  public static Path assembleModel(Path checkpoint, Path tokenizerSource, Path packageDir)
      throws IOException {
    if (!Files.isDirectory(checkpoint)
        || !Files.isRegularFile(checkpoint.resolve(LlamaConfig.FILE_NAME))) {
      throw new IllegalArgumentException(
          "the chosen checkpoint "
              + checkpoint
              + " is not a Hugging Face model directory (no config.json)");
    }
    Path model = Files.createDirectories(packageDir.resolve(MODEL_DIR));
    try (Stream<Path> files = Files.walk(checkpoint)) {
      for (Path f : (Iterable<Path>) files::iterator) {
        Path t = model.resolve(checkpoint.relativize(f).toString());
        if (Files.isDirectory(f)) {
          Files.createDirectories(t);
        } else {
          linkOrCopy(f, t);
        }
      }
    }
    if (tokenizerSource != null && Files.isDirectory(tokenizerSource)) {
      for (String name : TOKENIZER_FILES) {
        Path f = tokenizerSource.resolve(name);
        if (Files.isRegularFile(f) && !Files.exists(model.resolve(name))) {
          linkOrCopy(f, model.resolve(name));
        }
      }
    }
    if (!Files.exists(model.resolve("tokenizer.json"))
        && !Files.exists(model.resolve("tokenizer.model"))) {
      throw new IllegalArgumentException(
          "the chosen checkpoint "
              + checkpoint
              + " has no tokenizer (tokenizer.json or tokenizer.model), and neither has the run's model");
    }
    return model;
  }

  /**
   * Writes the serving configurations, the Kubernetes manifest and the manifest next to {@code
   * packageDir/model}.
   *
   * @throws IllegalArgumentException when config.json is not a supported Llama config, its
   *     quantization is unknown, or the token limits do not fit its context
   */
  public static Written write(Path packageDir, Spec spec) throws IOException {
    Path modelDir = packageDir.resolve(MODEL_DIR);
    Path configFile = modelDir.resolve(LlamaConfig.FILE_NAME);
    JsonNode configJson = JSON.readTree(configFile.toFile());
    CheckpointQuantization quantization = CheckpointQuantization.of(configJson);
    LlamaConfig config = LlamaConfig.read(configFile);
    int[] limits = tokenLimits(spec.params(), config.maxPositionEmbeddings());
    String target = spec.params().target();
    GpuTargets.Verdict verdict = GpuTargets.check(target, quantization, modelDir, config);
    String modelPath = MOUNT + "/" + MODEL_DIR;

    Map<String, String> v = new LinkedHashMap<>();
    v.put("image", IMAGE);
    v.put("modelPath", modelPath);
    v.put("quantizationFormat", describeWeights(quantization));
    v.put("maxRollingBatchSize", Integer.toString(spec.params().maxRollingBatchSize()));
    v.put("maxModelLen", Integer.toString(limits[0] + limits[1]));
    String dtype = gpuDtype(config);
    v.put("dtype", dtype);
    v.put(
        "dtypeReason",
        config.torchDtype().equals("float32")
            ? "bf16 for a float32 checkpoint: vLLM's Marlin and FP8 kernels take fp16/bf16 activations only"
            : "the checkpoint's torch_dtype " + config.torchDtype());
    String cpu = Template.resource("serving-cpu.properties").render(v);
    String gpu = Template.resource("serving-gpu.properties").render(v);

    v.put("deployment", spec.deployment());
    v.put("name", kubernetesName(spec.deployment()));
    v.put("runId", spec.runId());
    v.put("modelSha256", spec.model().getSha256());
    v.put("modelSubPath", storeSubPath(spec.model()));
    v.put("storeClaim", STORE_CLAIM);
    v.put("readinessMinutes", Integer.toString(READINESS_MINUTES));
    v.put("readinessFailureThreshold", Integer.toString(READINESS_MINUTES * 6));
    v.put(
        "servingProperties",
        gpu.lines().map(l -> l.isEmpty() ? "" : "    " + l).collect(Collectors.joining("\n")));
    String k8s = Template.resource("deployment.yaml").render(v);

    write(packageDir.resolve(CPU_PROPERTIES), cpu);
    write(packageDir.resolve(GPU_PROPERTIES), gpu);
    write(packageDir.resolve(K8S_DEPLOYMENT), k8s);
    if (target.equals(DeployerParams.GPU_TRTLLM)) {
      Path export = packageDir.resolve(TrtLlmExport.DIR);
      TrtLlmExport.write(modelDir, export, verdict.trtLlmQuantAlgo());
      for (String name : TOKENIZER_FILES) {
        if (Files.isRegularFile(modelDir.resolve(name))) {
          linkOrCopy(modelDir.resolve(name), export.resolve(name));
        }
      }
      v.put("trtllmPath", MOUNT + "/" + TrtLlmExport.DIR);
      v.put(
          "trtllmWeights",
          verdict.trtLlmQuantAlgo() == null
              ? "dense, " + config.torchDtype() + " (no hf_quant_config.json)"
              : verdict.trtLlmQuantAlgo()
                  + ", group "
                  + quantization.groupSize()
                  + ", symmetric ("
                  + TrtLlmExport.QUANT_CONFIG
                  + ")");
      write(packageDir.resolve(README), Template.resource("README-trtllm.md").render(v));
    }
    write(
        packageDir.resolve(MANIFEST),
        JSON.writeValueAsString(
                manifest(
                    spec, quantization, limits, Files.exists(packageDir.resolve(REPORT)), verdict))
            + "\n");
    return new Written(quantization, limits[0], limits[1], verdict.warnings());
  }

  /** The GPU engines' {@code option.dtype}: the checkpoint's half type, bf16 for a float32 one. */
  static String gpuDtype(LlamaConfig config) {
    return config.torchDtype().equals("float16") ? "fp16" : "bf16";
  }

  private static String describeWeights(CheckpointQuantization q) {
    String sparse = q.sparsity() == null ? "" : ", " + q.sparsity() + " sparse";
    if (!q.quantized()) {
      return "dense" + sparse;
    }
    return "compressed-tensors "
        + q.format()
        + " ("
        + q.scheme()
        + ", "
        + q.bits()
        + "-bit"
        + (q.groupSize() > 0 ? ", group " + q.groupSize() : ", per channel")
        + (q.zeroPoint() ? ", asymmetric" : "")
        + sparse
        + "), read by vLLM from model/config.json";
  }

  /** Copies report.json of an eval-report artefact (a directory holding it, or the file itself). */
  public static void copyReport(Path evalReport, Path packageDir) throws IOException {
    Path f = Files.isDirectory(evalReport) ? evalReport.resolve(REPORT) : evalReport;
    if (!Files.isRegularFile(f)) {
      throw new IllegalArgumentException(
          "the eval-report artefact " + evalReport + " has no " + REPORT);
    }
    Files.copy(f, packageDir.resolve(REPORT));
  }

  /**
   * maxInputTokens and maxOutputTokens: given or split from max_position_embeddings, checked
   * against it.
   */
  static int[] tokenLimits(DeployerParams p, int maxPositions) {
    Integer in = p.maxInputTokens();
    Integer out = p.maxOutputTokens();
    if (in == null && out == null) {
      in = Math.max(1, maxPositions / 2);
      out = Math.max(1, maxPositions - in);
    } else if (in == null) {
      in = maxPositions - out;
    } else if (out == null) {
      out = maxPositions - in;
    }
    if (in < 1 || out < 1 || in + out > maxPositions) {
      throw new IllegalArgumentException(
          "maxInputTokens + maxOutputTokens ("
              + in
              + " + "
              + out
              + ") must fit the model's max_position_embeddings "
              + maxPositions);
    }
    return new int[] {in, out};
  }

  /**
   * The path of a directory artefact inside a file store's root ({@code FileArtefactStore}'s
   * layout).
   */
  static String storeSubPath(ArtefactRef ref) {
    String sha = ref.getSha256();
    return "artefacts/" + sha.substring(0, 2) + "/" + sha;
  }

  /** A DNS-1123 name for the Deployment: lower-case letters, digits and '-'. */
  static String kubernetesName(String deployment) {
    String s = ("distillery-" + deployment.toLowerCase(Locale.ROOT)).replaceAll("[^a-z0-9-]", "-");
    s = s.length() > 52 ? s.substring(0, 52) : s;
    return s.replaceAll("-+$", "");
  }

  private static Map<String, Object> manifest(
      Spec spec,
      CheckpointQuantization q,
      int[] limits,
      boolean report,
      GpuTargets.Verdict verdict) {
    Map<String, Object> m = new LinkedHashMap<>();
    m.put("format", FORMAT);
    m.put("deployment", spec.deployment());
    m.put("target", spec.params().target());
    m.put("runId", spec.runId());
    m.put("jobId", spec.jobId());
    m.put("node", spec.node());
    m.put("stage", "deployer");
    Map<String, Object> parent = ref(spec.parent());
    parent.put("node", spec.parentNode());
    m.put("parent", parent);
    m.put("model", ref(spec.model()));
    m.put("teacher", spec.teacher() == null ? null : ref(spec.teacher()));
    m.put("params", JSON.convertValue(spec.params(), Map.class));
    m.put("quantization", q.describe());
    m.put("warnings", verdict.warnings());
    if (verdict.trtLlmQuantAlgo() != null) {
      m.put("tensorrtLlmQuantAlgo", verdict.trtLlmQuantAlgo());
    }
    m.put("maxInputTokens", limits[0]);
    m.put("maxOutputTokens", limits[1]);
    Map<String, Object> files = new LinkedHashMap<>();
    files.put("model", MODEL_DIR + "/");
    files.put("cpu", CPU_PROPERTIES);
    files.put("gpu", GPU_PROPERTIES);
    files.put("kubernetes", K8S_DEPLOYMENT);
    if (report) {
      files.put("report", REPORT);
    }
    if (spec.params().target().equals(DeployerParams.GPU_TRTLLM)) {
      files.put("tensorrtLlm", TrtLlmExport.DIR + "/");
      files.put("readme", README);
    }
    m.put("files", files);
    m.put("image", IMAGE);
    return m;
  }

  private static Map<String, Object> ref(ArtefactRef r) {
    Map<String, Object> m = new LinkedHashMap<>();
    m.put("uri", r.getUri());
    m.put("sha256", r.getSha256());
    m.put("bytes", r.getBytes());
    m.put("format", r.getFormat());
    return m;
  }

  private static void write(Path file, String text) throws IOException {
    Files.createDirectories(file.getParent());
    Files.writeString(file, text, StandardCharsets.UTF_8);
  }

  private static void linkOrCopy(Path source, Path target) throws IOException {
    Files.createDirectories(target.getParent());
    try {
      Files.createLink(target, source);
    } catch (FileSystemException | UnsupportedOperationException e) {
      Files.copy(source, target); // another file system, or links not supported
    }
  }
}
