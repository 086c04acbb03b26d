package io.distillery.runtime.artefact;

import io.distillery.schemas.common.ArtefactRef;
import java.io.IOException;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.Optional;

/**
 * Content-addressed storage of artefacts (checkpoints, calibration statistics, datasets, reports).
 * Events carry {@link ArtefactRef}s; the store turns them into local paths, refusing anything
 * outside its configured roots.
 */
public interface ArtefactStore {

  /**
   * Moves (or copies, when {@code copy}) a file or directory into the store; returns its reference.
   */
  ArtefactRef put(Path source, String format, boolean copy) throws IOException;

  /**
   * The local path of a reference, checked to exist inside the store's roots and to have the
   * recorded size.
   */
  Path resolve(ArtefactRef ref) throws IOException;

  /** A URI confined to the store's roots, as a local path. */
  Path resolve(String uri) throws IOException;

  /** A fresh, empty directory for one attempt's outputs. */
  Path newScratch() throws IOException;

  /** Removes a scratch directory and whatever the stage left in it. */
  void discardScratch(Path scratch) throws IOException;

  /** A directory that belongs to one job (all attempts), for resumable work. */
  Path workDir(String jobId) throws IOException;

  /** The result an identical job produced earlier, if its outputs are all still present. */
  Optional<CachedResult> cached(String cacheKey);

  void remember(String cacheKey, CachedResult result) throws IOException;

  /** Records that a job attempt's result was published, so a redelivered copy is ignored. */
  void markDone(String jobId, int attempt) throws IOException;

  boolean isDone(String jobId, int attempt);

  /** An output of an earlier identical job. */
  record CachedResult(List<ArtefactRef> outputs, Map<String, Double> metrics) {}
}
