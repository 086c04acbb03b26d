package io.distillery.stage;

import java.util.Set;

/** The {@code ArtefactRef.format} names stages exchange, in one place. */
public final class ArtefactFormats {
  /** A Hugging Face Llama directory with float weights (the distiller's and pruner's output). */
  public static final String HF_LLAMA = "hf-llama";

  /** A Hugging Face checkpoint of any float layout (a registered model, a deployed student). */
  public static final String HF_CHECKPOINT = "hf-checkpoint";

  /**
   * A Hugging Face Llama directory with compressed-tensors quantized weights (the quantizer's
   * output).
   */
  public static final String COMPRESSED_TENSORS = "compressed-tensors";

  /** Per-layer activation statistics and Hessians (the calibrator's output). */
  public static final String CALIBRATION = "calibration";

  /** Serving nodes' misfires as {@code misfires.jsonl} (the feedback service's output). */
  public static final String MISFIRES_JSONL = "misfires-jsonl";

  /** The evaluator's report.json and report.html. */
  public static final String EVAL_REPORT = "eval-report";

  /** A DJL Serving model directory (the deployer's output). */
  public static final String DJL_SERVING = "djl-serving";

  /** Formats a model core can load as a checkpoint. */
  public static final Set<String> CHECKPOINTS = Set.of(HF_LLAMA, HF_CHECKPOINT, COMPRESSED_TENSORS);

  private ArtefactFormats() {}
}
