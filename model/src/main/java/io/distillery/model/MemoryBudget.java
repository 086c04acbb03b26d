package io.distillery.model;

import io.distillery.model.config.LlamaConfig;
import io.distillery.model.config.LlamaTensorNames;
import io.distillery.stage.StageException;
import java.util.Locale;

/**
 * The one place a stage refuses a job its worker cannot hold: the stage (or its memory plan)
 * estimates the peak bytes before any work, and {@link #require} fails the job as fatal with both
 * numbers and what to change, instead of an OutOfMemoryError part-way through. The budget is the
 * worker's ({@code StageContext.memoryBudgetBytes()}, from {@code DISTILLERY_WORKER_MEMORY} or the
 * container's limit).
 */
public final class MemoryBudget {

  private MemoryBudget() {}

  /**
   * Fails when {@code neededBytes} exceed {@code budgetBytes}, e.g. "calibrating this model needs
   * 14.2 GB, this worker has 6.0 GB: raise DISTILLERY_WORKER_MEMORY or lower samples/seqLen".
   *
   * @param what what needs the memory, the start of the message (e.g. "calibrating this model (F32
   *     weights and X^T X)")
   */
  public static void require(long neededBytes, long budgetBytes, String what)
      throws StageException.Fatal {
    String refusal = refusal(neededBytes, budgetBytes);
    if (refusal != null) {
      throw StageException.fatal(what + " " + refusal);
    }
  }

  /**
   * "needs 14.2 GB, this worker has 6.0 GB: raise DISTILLERY_WORKER_MEMORY or lower
   * samples/seqLen", or null when {@code neededBytes} fit: the one wording of every refusal, which
   * stages extend with their own detail.
   */
  public static String refusal(long neededBytes, long budgetBytes) {
    if (neededBytes <= budgetBytes) {
      return null;
    }
    return "needs "
        + format(neededBytes)
        + ", this worker has "
        + format(budgetBytes)
        + ": raise DISTILLERY_WORKER_MEMORY or lower samples/seqLen";
  }

  /**
   * The bytes of every tensor of {@code config} widened to F32 (the whole model in memory at once).
   */
  public static long denseF32Bytes(LlamaConfig config) {
    return Math.multiplyExact(LlamaTensorNames.parameterCount(config), Float.BYTES);
  }

  /** Bytes with one decimal, in GB from 1 GB up, else MB (powers of ten). */
  public static String format(long bytes) {
    return bytes >= 1e9
        ? String.format(Locale.ROOT, "%.1f GB", bytes / 1e9)
        : String.format(Locale.ROOT, "%.1f MB", bytes / 1e6);
  }
}
