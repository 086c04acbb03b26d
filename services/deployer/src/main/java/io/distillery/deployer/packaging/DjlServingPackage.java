package io.distillery.deployer.packaging;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import io.distillery.deployer.DeployerParams;
import io.distillery.model.config.LlamaConfig;
import io.distillery.stage.ArtefactFormats;
import io.distillery.schemas.common.ArtefactRef;
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
 * The deployer's output format {@value #FORMAT}: a directory that DJL Serving loads as one model, and that
 * Distillery's serving nodes load from {@code model/}.
 * <pre>
 * model/                   the chosen Hugging Face checkpoint (config.json, *.safetensors) and its tokenizer files
 * serving.properties       local CPU target (DJL Serving, Python engine, Hugging Face handler)
 * gpu/serving.properties   GPU target (DJL Serving LMI, TensorRT-LLM)
 * k8s/deployment.yaml      ConfigMap (the GPU serving.properties) + Deployment on one nvidia.com/gpu
 * manifest.json            lineage: parent artefact, run, params, quantization
 * report.json              the evaluator's report, when the chosen checkpoint came with one
 * </pre>
 * The templates live next to this class as resources and cite the DJL Serving documentation they follow.
 */
public final class DjlServingPackage {

  public static final String FORMAT = ArtefactFormats.DJL_SERVING;
  /** The format of {@code model/} when it is stored on its own (the Kubernetes manifest mounts it by hash). */
  public static final String MODEL_FORMAT = ArtefactFormats.HF_CHECKPOINT;
  public static final String IMAGE = "deepjavalibrary/djl-serving:0.33.0-tensorrt-llm";
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
  static final List<String> TOKENIZER_FILES = List.of("tokenizer.json", "tokenizer_config.json",
      "special_tokens_map.json", "tokenizer.model", "vocab.json", "merges.txt", "generation_config.json");
  static final int READINESS_MINUTES = 30;

  private static final ObjectMapper JSON = new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT);

  private DjlServingPackage() {}

  /** What goes into the package besides the model files. */
  public record Spec(String deployment, String runId, String jobId, String node, String parentNode,
      ArtefactRef parent, ArtefactRef teacher, ArtefactRef model, DeployerParams params) {}

  /** What {@link #write} derived from the checkpoint. */
  public record Written(CheckpointQuantization quantization, int maxInputTokens, int maxOutputTokens) {}

  /**
   * Fills {@code packageDir/model} with the checkpoint's files, adding the tokenizer files of {@code tokenizerSource}
   * (the run's model) that the checkpoint lacks: quantized and pruned checkpoints carry weights and config only.
   * Files are hard-linked where the file system allows (store artefacts are immutable), else copied.
   *
   * @throws IllegalArgumentException when the checkpoint is no directory with a config.json, or no tokenizer is found
   */
  public static Path assembleModel(Path checkpoint, Path tokenizerSource, Path packageDir) throws IOException {
    if (!Files.isDirectory(checkpoint) || !Files.isRegularFile(checkpoint.resolve(LlamaConfig.FILE_NAME))) {
      throw new IllegalArgumentException("the chosen checkpoint " + checkpoint
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
    if (!Files.exists(model.resolve("tokenizer.json")) && !Files.exists(model.resolve("tokenizer.model"))) {
      throw new IllegalArgumentException("the chosen checkpoint " + checkpoint
          + " has no tokenizer (tokenizer.json or tokenizer.model), and neither has the run's model");
    }
    return model;
  }

  /**
   * Writes the serving configurations, the Kubernetes manifest and the manifest next to {@code packageDir/model}.
   *
   * @throws IllegalArgumentException when config.json is not a supported Llama config, its quantization is unknown,
   *     or the token limits do not fit its context
   */
  public static Written write(Path packageDir, Spec spec) throws IOException {
    Path configFile = packageDir.resolve(MODEL_DIR).resolve(LlamaConfig.FILE_NAME);
    JsonNode configJson = JSON.readTree(configFile.toFile());
    CheckpointQuantization quantization = CheckpointQuantization.of(configJson);
    LlamaConfig config = LlamaConfig.read(configFile);
    int[] limits = tokenLimits(spec.params(), config.maxPositionEmbeddings());
    String modelPath = MOUNT + "/" + MODEL_DIR;

    Map<String, String> v = new LinkedHashMap<>();
    v.put("image", IMAGE);
    v.put("modelPath", modelPath);
    v.put("quantizationFormat", quantization.quantized() ? "compressed-tensors " + quantization.format() : "none: dense");
    v.put("maxRollingBatchSize", Integer.toString(spec.params().maxRollingBatchSize()));
    v.put("maxInputTokens", Integer.toString(limits[0]));
    v.put("maxOutputTokens", Integer.toString(limits[1]));
    v.put("maxNumTokens", Integer.toString(spec.params().maxRollingBatchSize() * limits[0]));
    v.put("quantization", gpuQuantization(quantization));
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
    v.put("servingProperties", gpu.lines().map(l -> l.isEmpty() ? "" : "    " + l)
        .collect(Collectors.joining("\n")));
    String k8s = Template.resource("deployment.yaml").render(v);

    write(packageDir.resolve(CPU_PROPERTIES), cpu);
    write(packageDir.resolve(GPU_PROPERTIES), gpu);
    write(packageDir.resolve(K8S_DEPLOYMENT), k8s);
    write(packageDir.resolve(MANIFEST), JSON.writeValueAsString(manifest(spec, quantization, limits,
        Files.exists(packageDir.resolve(REPORT)))) + "\n");
    return new Written(quantization, limits[0], limits[1]);
  }

  /** Copies report.json of an eval-report artefact (a directory holding it, or the file itself). */
  public static void copyReport(Path evalReport, Path packageDir) throws IOException {
    Path f = Files.isDirectory(evalReport) ? evalReport.resolve(REPORT) : evalReport;
    if (!Files.isRegularFile(f)) {
      throw new IllegalArgumentException("the eval-report artefact " + evalReport + " has no " + REPORT);
    }
    Files.copy(f, packageDir.resolve(REPORT));
  }

  /** maxInputTokens and maxOutputTokens: given or split from max_position_embeddings, checked against it. */
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
      throw new IllegalArgumentException("maxInputTokens + maxOutputTokens (" + in + " + " + out
          + ") must fit the model's max_position_embeddings " + maxPositions);
    }
    return new int[] {in, out};
  }

  /**
   * The GPU target's quantization lines. The checkpoint is already quantized: LMI's documented {@code option.quantize}
   * (trt_llm_user_guide.md) selects the matching engine family, and the TensorRT-LLM {@code QuantConfig} keys, which
   * the LMI 0.33 build script reads instead of {@code quantize}, state the stored layout so that the weights are
   * loaded as they are rather than re-calibrated.
   */
  static String gpuQuantization(CheckpointQuantization q) {
    if (!q.quantized()) {
      return "# dense checkpoint: no quantization; the engine is built in option.dtype\n";
    }
    StringBuilder sb = new StringBuilder();
    sb.append("# pre-quantized weights: compressed-tensors ").append(q.format()).append(", ").append(q.bits())
        .append("-bit").append(q.groupSize() > 0 ? ", group " + q.groupSize() : "")
        .append(q.zeroPoint() ? ", asymmetric" : "").append(" (model/config.json quantization_config)\n");
    if (q.lmiQuantize() != null) {
      sb.append("# option.quantize: the LMI engine family of these weights (trt_llm_user_guide.md: smoothquant|awq|fp8)\n");
      sb.append("option.quantize=").append(q.lmiQuantize()).append('\n');
      if (q.lmiQuantize().equals("awq")) {
        sb.append("option.q_format=int4_awq\n");
        sb.append("option.awq_block_size=").append(q.groupSize()).append('\n');
      }
    }
    sb.append("# TensorRT-LLM QuantConfig keys (read by the LMI 0.33 build script instead of option.quantize): the stored\n");
    sb.append("# layout, so the engine is built from these weights as they are, without re-calibration\n");
    sb.append("option.quant_algo=").append(q.trtLlmQuantAlgo()).append('\n');
    if (q.groupSize() > 0) {
      sb.append("option.group_size=").append(q.groupSize()).append('\n');
    }
    if (q.bits() == 4) {
      sb.append("option.has_zero_point=").append(q.zeroPoint()).append('\n');
    }
    return sb.toString();
  }

  /** The path of a directory artefact inside a file store's root ({@code FileArtefactStore}'s layout). */
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

  private static Map<String, Object> manifest(Spec spec, CheckpointQuantization q, int[] limits, boolean report) {
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
