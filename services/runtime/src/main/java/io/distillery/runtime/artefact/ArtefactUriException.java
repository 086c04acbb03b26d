package io.distillery.runtime.artefact;

import io.distillery.stage.UnusableInput;
import java.io.IOException;

/**
 * A URI that the store will not follow: a foreign scheme, a path outside the roots, a missing
 * artefact.
 */
public final class ArtefactUriException extends IOException implements UnusableInput {
  public ArtefactUriException(String message) {
    super(message);
  }
}
