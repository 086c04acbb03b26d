package io.distillery.runtime.worker;

import io.distillery.schemas.common.ArtefactRef;
import io.distillery.schemas.job.StageInput;
import io.distillery.schemas.job.StageJob;
import io.distillery.stage.ContentHash;
import java.util.Map;

/**
 * Same stage + same params + same input hashes = same output: the key under which a result is
 * reused.
 */
final class StageCacheKey {

  private StageCacheKey() {}

  static String of(StageJob job, String canonicalParams) {
    StringBuilder sb = new StringBuilder();
    sb.append("stage=").append(job.getStage()).append('\n');
    sb.append("params=").append(canonicalParams).append('\n');
    sb.append("model=").append(job.getModel().getSha256()).append('\n');
    job.getGates().entrySet().stream()
        .sorted(Map.Entry.comparingByKey())
        .forEach(
            e ->
                sb.append("gate=")
                    .append(e.getKey())
                    .append('=')
                    .append(e.getValue())
                    .append('\n'));
    for (StageInput in : job.getInputs()) {
      sb.append("input=").append(in.getNode()).append(':');
      for (ArtefactRef r : in.getArtefacts()) {
        sb.append(r.getSha256()).append(',');
      }
      sb.append('\n');
    }
    return ContentHash.ofString(sb.toString());
  }
}
