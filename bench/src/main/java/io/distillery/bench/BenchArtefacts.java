package io.distillery.bench;

import io.distillery.schemas.common.ArtefactRef;
import io.distillery.stage.StageContext;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;

/** Artefact references for stages run in-process by the benches (no store, so no real hash). */
final class BenchArtefacts {

  private BenchArtefacts() {}

  /** One upstream node's output, as the planner would hand it to the next stage. */
  static StageContext.Input input(String node, String stage, Path path, String format) {
    return new StageContext.Input(
        node, stage, List.of(new StageContext.Artefact(ref(path, format), path)), Map.of());
  }

  static ArtefactRef ref(Path path, String format) {
    return ArtefactRef.newBuilder()
        .setUri(path.toUri().toString())
        .setSha256("bench")
        .setBytes(0L)
        .setFormat(format)
        .build();
  }
}
