package io.distillery.cli;

import io.distillery.runtime.artefact.FileArtefactStore;
import io.distillery.schemas.common.ArtefactRef;
import io.distillery.schemas.run.RunState;
import io.distillery.schemas.run.StageState;
import io.distillery.stage.ArtefactFormats;
import java.io.FileNotFoundException;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.regex.Pattern;

/**
 * The evaluation reports the runs page serves under {@code /reports/<sha256>/<file>}: only
 * artefacts of format {@code eval-report} that a run names, only files directly inside the
 * artefact's directory, and only through the store's own URI check, so a request can reach nothing
 * outside the store root (no {@code ../}, no symlink out, no artefact of another format).
 */
final class EvaluationReports {

  private static final Pattern SHA256 = Pattern.compile("[0-9a-f]{64}");
  private static final Pattern FILE_NAME = Pattern.compile("[A-Za-z0-9][A-Za-z0-9._-]{0,127}");

  private final FileArtefactStore store;
  private final Map<String, String> uris = new ConcurrentHashMap<>();

  /**
   * @param store the store root; null when the page has none (every report is then not found)
   */
  EvaluationReports(Path store) throws IOException {
    this.store = store == null ? null : new FileArtefactStore(store);
  }

  /** Remembers the eval-report artefacts of a run's stages. */
  void remember(RunState run) {
    for (StageState s : run.getStages()) {
      for (ArtefactRef a : s.getOutputs()) {
        if (ArtefactFormats.EVAL_REPORT.equals(a.getFormat())) {
          uris.put(a.getSha256(), a.getUri());
        }
      }
    }
  }

  /**
   * The file {@code name} of the report {@code sha256}.
   *
   * @throws FileNotFoundException with the reason, when it is not a served report file
   */
  Path file(String sha256, String name) throws IOException {
    if (!SHA256.matcher(sha256).matches()) {
      throw new FileNotFoundException("'" + sha256 + "' is not a sha256");
    }
    if (!FILE_NAME.matcher(name).matches() || name.contains("..")) {
      throw new FileNotFoundException("'" + name + "' is not a file name inside a report");
    }
    if (store == null) {
      throw new FileNotFoundException("this runs page has no artefact store");
    }
    String uri = uris.get(sha256);
    if (uri == null) {
      throw new FileNotFoundException("no run names an eval-report artefact " + sha256);
    }
    Path dir = store.resolve(uri);
    if (!Files.isDirectory(dir)) {
      throw new FileNotFoundException("eval-report " + sha256 + " is missing from the store");
    }
    Path file = dir.resolve(name);
    if (!Files.isRegularFile(file) || !file.toRealPath().startsWith(dir.toRealPath())) {
      throw new FileNotFoundException("report " + sha256 + " has no file " + name);
    }
    return file.toRealPath();
  }

  static String contentType(Path file) {
    String n = file.getFileName().toString();
    if (n.endsWith(".html")) {
      return "text/html; charset=utf-8";
    }
    if (n.endsWith(".json")) {
      return "application/json";
    }
    return n.endsWith(".svg") ? "image/svg+xml" : "text/plain; charset=utf-8";
  }
}
