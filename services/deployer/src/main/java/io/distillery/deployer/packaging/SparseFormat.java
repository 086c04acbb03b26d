package io.distillery.deployer.packaging;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.distillery.deployer.DeployerParams;
import io.distillery.model.config.LlamaConfig;
import io.distillery.model.config.LlamaTensorNames;
import io.distillery.model.quant.Sparse24Bitmask;
import io.distillery.model.safetensors.Checkpoint;
import io.distillery.model.stream.MemoryPlan;
import io.distillery.stage.FileTrees;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Stream;

/**
 * How the package stores the weights of a 2:4-pruned checkpoint (the deployer's {@code
 * sparseFormat}): compressed-tensors' {@code dense} form, as the pruner writes it (zeros stored, a
 * {@code sparsity_config} declaring the structure), or the compressed {@code sparse-24-bitmask}
 * layout ({@link Sparse24Bitmask}: half the values plus one bit a weight, about 44% smaller for
 * BF16 layers).
 *
 * <p>{@code auto} (the default) writes {@code sparse-24-bitmask} exactly where vLLM runs it: target
 * {@code gpu-vllm}, and every sparse layer one that vLLM's {@code supports_cutlass_24} hands to
 * {@code CompressedTensors24} (no quantization, or 8-bit W8A8) with in and out features multiples
 * of 8. Those are the layers vLLM already runs through the same scheme, on the same GPUs (compute
 * capability 9.0), when they are stored dense, so the smaller form loses no reach in the package's
 * LMI v20 container (vLLM 0.15.1 with compressed-tensors 0.13.0). Anywhere else the weights stay
 * dense and the reason is returned as a warning. {@code sparse-24-bitmask} asks for the compressed
 * layout and refuses, naming the rule, where vLLM could not load it; {@code dense} keeps the
 * pruner's form. {@code none} drops the {@code sparsity_config} (the zeros stay, as plain dense
 * weights): vLLM then loads the layers with their ordinary scheme on any GPU and in any release,
 * without 2:4 kernels, where a declared 2:4 structure needs compute capability 9.0 (Hopper) and a
 * vLLM before 0.19, which dropped CompressedTensors24.
 */
public final class SparseFormat {

  public static final String AUTO = "auto";
  public static final String DENSE = Sparse24Bitmask.DENSE;
  public static final String BITMASK = Sparse24Bitmask.FORMAT;
  public static final String NONE = "none";
  public static final List<String> VALUES = List.of(AUTO, DENSE, BITMASK, NONE);

  private static final ObjectMapper JSON = new ObjectMapper();

  private SparseFormat() {}

  /**
   * What was done to the package's model.
   *
   * @param format how the 2:4 weights are stored now ({@code dense} or {@code sparse-24-bitmask}),
   *     or null when the checkpoint declares no 2:4 sparsity
   * @param warnings why {@code auto} kept the weights dense, if it did
   */
  public record Decision(String format, List<String> warnings) {}

  /**
   * Stores the 2:4 weights of {@code modelDir} (the package's {@code model/}, whose files may be
   * hard links into the artefact store: they are replaced, never written through) as {@code
   * params.sparseFormat()} resolves for {@code params.target()}.
   *
   * @param memoryBudgetBytes the job's memory budget: the rewrite is refused before it starts when
   *     its plan ({@link #plannedBytes}) exceeds it
   * @throws IllegalArgumentException naming the rule, when {@code sparse-24-bitmask} is asked for
   *     where vLLM cannot load it, the weights are not 2:4 sparse, or the rewrite cannot fit
   */
  public static Decision apply(Path modelDir, DeployerParams params, long memoryBudgetBytes)
      throws IOException {
    Path configFile = modelDir.resolve(LlamaConfig.FILE_NAME);
    JsonNode q = JSON.readTree(configFile.toFile()).path("quantization_config");
    JsonNode s = q.path("sparsity_config");
    String requested = params.sparseFormat();
    boolean twoFour = "2:4".equals(s.path("sparsity_structure").asText());
    if (!twoFour) {
      if (requested.equals(BITMASK)) {
        throw new IllegalArgumentException(
            "sparseFormat: sparse-24-bitmask needs a 2:4-pruned checkpoint (a sparsity_config with "
                + "sparsity_structure 2:4, as the pruner's 2:4 pattern writes it); this one declares "
                + (s.isMissingNode() || s.isEmpty()
                    ? "no sparsity_config"
                    : "sparsity_structure '" + s.path("sparsity_structure").asText() + "'"));
      }
      return new Decision(null, List.of());
    }
    String stored = s.path("format").asText(DENSE);
    if (stored.equals(BITMASK)) {
      if (requested.equals(DENSE) || requested.equals(NONE)) {
        throw new IllegalArgumentException(
            "sparseFormat: "
                + requested
                + ", but the checkpoint is already stored sparse-24-bitmask and the "
                + "deployer does not expand it; use sparseFormat auto or sparse-24-bitmask");
      }
      return new Decision(BITMASK, List.of());
    }
    if (requested.equals(DENSE)) {
      return new Decision(DENSE, List.of());
    }
    if (requested.equals(NONE)) {
      unmark(modelDir);
      return new Decision(NONE, List.of());
    }
    String refusal =
        params.target().equals(DeployerParams.GPU_VLLM)
            ? vllmRefusal(q, modelDir)
            : "target "
                + params.target()
                + " does not load it: the compressed 2:4 layout is vLLM's (CompressedTensors24, "
                + "target gpu-vllm)"
                + (params.target().equals(DeployerParams.GPU_TRTLLM)
                    ? "; TensorRT-LLM reads dense weights (llmapi/llm_utils.py refuses a "
                        + "compressed-tensors quantization_config)"
                    : "; the local CPU node gains nothing from it");
    if (refusal != null) {
      if (requested.equals(BITMASK)) {
        throw new IllegalArgumentException("sparseFormat: sparse-24-bitmask refused: " + refusal);
      }
      List<String> warnings =
          params.target().equals(DeployerParams.GPU_VLLM)
              ? List.of(
                  "gpu-vllm: the 2:4 weights stay dense (sparsity_config format dense), not "
                      + "sparse-24-bitmask: "
                      + refusal)
              : List.of();
      return new Decision(DENSE, warnings);
    }
    long planned = plannedBytes(modelDir, q);
    if (planned > memoryBudgetBytes) {
      throw new IllegalArgumentException(
          "storing the 2:4 weights sparse-24-bitmask needs "
              + MemoryPlan.gigabytes(planned)
              + " (the largest weight about 2.25 times over, one at a time) but the job's budget is "
              + MemoryPlan.gigabytes(memoryBudgetBytes)
              + "; raise the worker's memory or use sparseFormat: dense");
    }
    compressInPlace(modelDir);
    return new Decision(BITMASK, List.of());
  }

  /**
   * Memory the rewrite holds at its peak: one tensor at a time, a sparse target's dense bytes with
   * its compressed values and bitmask built and copied once (about 2.25 times the weight), any
   * other tensor once, plus the runtime's own share.
   */
  static long plannedBytes(Path modelDir, JsonNode q) throws IOException {
    LlamaConfig config = LlamaConfig.read(modelDir.resolve(LlamaConfig.FILE_NAME));
    var targets = Sparse24Bitmask.targets(q.path("sparsity_config"), config);
    long peak = 0;
    try (Checkpoint file = Checkpoint.open(modelDir)) {
      for (String name : file.tensorNames()) {
        long bytes = file.info(name).byteSize();
        boolean target =
            name.endsWith(".weight")
                && targets.contains(name.substring(0, name.length() - ".weight".length()));
        peak = Math.max(peak, target ? bytes * 9 / 4 : bytes);
      }
    }
    return peak + MemoryPlan.RUNTIME_BYTES;
  }

  /** Why vLLM could not load the checkpoint's 2:4 layers compressed, or null. */
  private static String vllmRefusal(JsonNode q, Path modelDir) throws IOException {
    String refusal = Sparse24Bitmask.vllmRefusal(q);
    if (refusal != null) {
      return refusal;
    }
    LlamaConfig config = LlamaConfig.read(modelDir.resolve(LlamaConfig.FILE_NAME));
    List<String> misfits = new ArrayList<>();
    for (String m : Sparse24Bitmask.targets(q.path("sparsity_config"), config)) {
      long[] shape = LlamaTensorNames.shapes(config).get(LlamaTensorNames.weight(m));
      if (shape[0] % 8 != 0 || shape[1] % 8 != 0) {
        misfits.add(m + " [" + shape[0] + ", " + shape[1] + "]");
      }
    }
    if (!misfits.isEmpty()) {
      return misfits.size()
          + " sparse layer(s) have in or out features that are not multiples of 8 ("
          + String.join(", ", misfits.subList(0, Math.min(3, misfits.size())))
          + (misfits.size() > 3 ? ", ..." : "")
          + "): vLLM schemes/compressed_tensors_24.py create_weights asserts every output "
          + "partition divisible by 8 and registers the bitmask as in // 8 bytes a row";
    }
    return null;
  }

  /**
   * Drops the 2:4 declaration from {@code modelDir}'s config.json: the {@code sparsity_config} of a
   * quantized checkpoint becomes empty (as for one never pruned), and a {@code quantization_config}
   * that held only it goes, leaving a plain dense model. The new file replaces the directory entry
   * (config.json may be a link into the store).
   */
  private static void unmark(Path modelDir) throws IOException {
    Path configFile = modelDir.resolve(LlamaConfig.FILE_NAME);
    ObjectNode root = (ObjectNode) JSON.readTree(configFile.toFile());
    ObjectNode q = (ObjectNode) root.get("quantization_config");
    if (q.path("config_groups").isEmpty()) {
      root.remove("quantization_config");
    } else {
      q.putObject("sparsity_config");
    }
    Path tmp = modelDir.resolve("." + LlamaConfig.FILE_NAME + ".tmp");
    JSON.writerWithDefaultPrettyPrinter().writeValue(tmp.toFile(), root);
    Files.move(tmp, configFile, StandardCopyOption.REPLACE_EXISTING);
  }

  /**
   * Rewrites {@code modelDir}'s weights and config.json in the compressed layout: written beside it
   * first, then the old entries (links into the store) are removed and the new files moved in.
   */
  private static void compressInPlace(Path modelDir) throws IOException {
    Path tmp = modelDir.resolveSibling("." + modelDir.getFileName() + ".sparse-24-bitmask");
    FileTrees.delete(tmp);
    try {
      Sparse24Bitmask.compressCheckpoint(modelDir, tmp);
      try (Stream<Path> files = Files.list(modelDir)) {
        for (Path f : files.toList()) {
          String name = f.getFileName().toString();
          if (name.endsWith(".safetensors") || name.equals(Checkpoint.INDEX_FILE)) {
            Files.delete(f);
          }
        }
      }
      try (Stream<Path> files = Files.list(tmp)) {
        for (Path f : files.toList()) {
          // REPLACE_EXISTING swaps the directory entry (config.json may be a link into the store)
          Files.move(f, modelDir.resolve(f.getFileName()), StandardCopyOption.REPLACE_EXISTING);
        }
      }
    } finally {
      FileTrees.delete(tmp);
    }
  }
}
