package io.distillery.model.calib;

import io.distillery.model.CheckpointException;
import io.distillery.stage.StageContext;
import io.distillery.stage.StageException;
import java.io.IOException;
import java.util.List;

/**
 * How a stage that needs calibration (quantizer, pruner) finds and reads the calibrator's output
 * among its inputs.
 */
public final class CalibrationInput {

  private CalibrationInput() {}

  /**
   * The statistics of the first {@code calibration} input artefact (a file, or a directory holding
   * {@value CalibrationStats#FILE_NAME}).
   *
   * @param needer what needs them, for the error message (e.g. "scheme w4-gptq")
   * @throws StageException.Fatal when there is no calibration input or it is corrupt
   * @throws StageException.Retryable when it cannot be read
   */
  public static CalibrationStats read(StageContext<?> ctx, String needer) throws StageException {
    List<StageContext.Artefact> artefacts = ctx.artefacts(CalibrationStats.FORMAT);
    if (artefacts.isEmpty()) {
      throw StageException.fatal(
          needer
              + " needs calibration statistics: add a calibrator node to this node's"
              + " 'after' list");
    }
    try {
      return CalibrationStats.readArtefact(artefacts.getFirst().path());
    } catch (CheckpointException e) {
      throw StageException.fatal("corrupt calibration artefact: " + e.getMessage(), e);
    } catch (IOException e) {
      throw StageException.retryable("cannot read the calibration artefact: " + e.getMessage(), e);
    }
  }
}
