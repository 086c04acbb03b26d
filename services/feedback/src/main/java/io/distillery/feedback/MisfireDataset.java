package io.distillery.feedback;

import com.fasterxml.jackson.databind.node.ObjectNode;
import io.distillery.runtime.artefact.ArtefactStore;
import io.distillery.schemas.common.ArtefactRef;
import io.distillery.stage.ArtefactFormats;
import java.io.IOException;
import java.io.Writer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.HexFormat;
import java.util.List;

/**
 * The {@code misfires-jsonl} artefact of one incident: a directory holding {@code misfires.jsonl},
 * one JSON object per distinct prompt ({@code prompt, output, expected, reason, deploymentId,
 * split}). The split is a function of the prompt alone (its sha256 modulo 100 below {@code
 * heldoutPercent} is held out), so a prompt lands on the same side in every incident and the
 * distiller never trains on what the evaluator holds back.
 */
final class MisfireDataset {

  static final String FORMAT = ArtefactFormats.MISFIRES_JSONL;
  static final String FILE = "misfires.jsonl";

  private final ArtefactStore store;
  private final int heldoutPercent;

  MisfireDataset(ArtefactStore store, int heldoutPercent) {
    this.store = store;
    this.heldoutPercent = heldoutPercent;
  }

  /**
   * Writes the rows (already one per prompt, in event order) and stores them; equal rows give the
   * same artefact.
   */
  ArtefactRef write(List<MisfireRow> rows) throws IOException {
    Path dir = store.newScratch().resolve("misfires");
    Files.createDirectories(dir);
    try (Writer w = Files.newBufferedWriter(dir.resolve(FILE), StandardCharsets.UTF_8)) {
      for (MisfireRow r : rows) {
        ObjectNode o = JsonSerde.JSON.createObjectNode();
        o.put("prompt", r.prompt());
        o.put("output", r.output());
        o.put("expected", r.expected());
        o.put("reason", r.reason());
        o.put("deploymentId", r.deploymentId());
        o.put("split", split(r.prompt()));
        w.write(JsonSerde.JSON.writeValueAsString(o));
        w.write('\n');
      }
    }
    ArtefactRef ref = store.put(dir, FORMAT, false);
    store.discardScratch(dir.getParent());
    return ref;
  }

  String split(String prompt) {
    return bucket(prompt) < heldoutPercent ? "heldout" : "train";
  }

  /** sha256 of the prompt, first 8 bytes as an unsigned number, modulo 100. */
  static int bucket(String prompt) {
    return (int)
        Long.remainderUnsigned(Long.parseUnsignedLong(hash(prompt).substring(0, 16), 16), 100);
  }

  static String hash(String prompt) {
    try {
      return HexFormat.of()
          .formatHex(
              MessageDigest.getInstance("SHA-256").digest(prompt.getBytes(StandardCharsets.UTF_8)));
    } catch (NoSuchAlgorithmException e) {
      throw new IllegalStateException("the JDK has no SHA-256", e);
    }
  }
}
