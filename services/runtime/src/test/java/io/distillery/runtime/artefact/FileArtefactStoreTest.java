package io.distillery.runtime.artefact;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.distillery.schemas.common.ArtefactRef;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class FileArtefactStoreTest {

  @TempDir Path tmp;

  @Test
  void shouldNameEqualContentEquallyWhenStoredTwice() throws Exception {
    FileArtefactStore store = new FileArtefactStore(tmp.resolve("store"));
    Path d1 = Files.createDirectories(tmp.resolve("a"));
    Files.writeString(d1.resolve("config.json"), "{}");
    Files.writeString(d1.resolve("w.bin"), "weights");
    Path d2 = Files.createDirectories(tmp.resolve("b"));
    Files.writeString(d2.resolve("config.json"), "{}");
    Files.writeString(d2.resolve("w.bin"), "weights");
    ArtefactRef r1 = store.put(d1, "dir", true);
    ArtefactRef r2 = store.put(d2, "dir", false);
    assertThat(r1.getSha256()).isEqualTo(r2.getSha256()).hasSize(64);
    assertThat(r1.getBytes()).isEqualTo(2 + 7);
    assertThat(Files.exists(d1)).isTrue(); // copied
    assertThat(Files.exists(d2)).isFalse(); // moved (deduplicated)
    assertThat(Files.readString(store.resolve(r1).resolve("w.bin"))).isEqualTo("weights");
    Files.writeString(d1.resolve("w.bin"), "other");
    assertThat(store.put(d1, "dir", true).getSha256()).isNotEqualTo(r1.getSha256());
  }

  @Test
  void shouldRefuseUrisOutsideTheRoots() throws Exception {
    FileArtefactStore store = new FileArtefactStore(tmp.resolve("store"));
    Path outside = Files.writeString(tmp.resolve("secret.txt"), "x");
    String root = store.root().toUri().toString();
    assertThatThrownBy(() -> store.resolve(root + "artefacts/../../secret.txt"))
        .isInstanceOf(ArtefactUriException.class)
        .hasMessageContaining("path traversal");
    assertThatThrownBy(() -> store.resolve(outside.toUri().toString()))
        .isInstanceOf(ArtefactUriException.class)
        .hasMessageContaining("outside the store's roots");
    assertThatThrownBy(() -> store.resolve("http://example.invalid/model"))
        .isInstanceOf(ArtefactUriException.class)
        .hasMessageContaining("only file://");
    assertThatThrownBy(() -> store.resolve("file://evil.example/etc/passwd"))
        .isInstanceOf(ArtefactUriException.class)
        .hasMessageContaining("remote host");
    Path link = store.root().resolve("artefacts").resolve("link");
    Files.createSymbolicLink(link, outside);
    assertThatThrownBy(() -> store.resolve(link.toUri().toString()))
        .isInstanceOf(ArtefactUriException.class)
        .hasMessageContaining("outside");
    // an extra read root is allowed
    FileArtefactStore wider = new FileArtefactStore(tmp.resolve("store"), List.of(tmp));
    assertThat(wider.resolve(outside.toUri().toString())).isEqualTo(outside.toRealPath());
  }

  @Test
  void shouldDetectATruncatedArtefact() throws Exception {
    FileArtefactStore store = new FileArtefactStore(tmp.resolve("store"));
    ArtefactRef ref = store.put(Files.writeString(tmp.resolve("f.txt"), "hello"), "text", false);
    Files.writeString(store.resolve(ref.getUri()), "hel");
    assertThatThrownBy(() -> store.resolve(ref))
        .hasMessageContaining("has 3 bytes but its reference says 5");
  }

  @Test
  void shouldReuseCachedResultOnlyWhileOutputsExist() throws Exception {
    FileArtefactStore store = new FileArtefactStore(tmp.resolve("store"));
    ArtefactRef ref = store.put(Files.writeString(tmp.resolve("out.txt"), "result"), "text", false);
    store.remember("k1", new ArtefactStore.CachedResult(List.of(ref), Map.of("loss", 0.5)));
    assertThat(store.cached("k1"))
        .hasValueSatisfying(
            c -> {
              assertThat(c.outputs()).containsExactly(ref);
              assertThat(c.metrics()).containsEntry("loss", 0.5);
            });
    assertThat(store.cached("k2")).isEmpty();
    Files.delete(store.resolve(ref.getUri()));
    assertThat(store.cached("k1")).isEmpty();
  }

  @Test
  void shouldDiscardOnlyScratchDirectories() throws Exception {
    FileArtefactStore store = new FileArtefactStore(tmp.resolve("store"));
    Path scratch = store.newScratch();
    Files.writeString(scratch.resolve("left-over.bin"), "x");
    store.discardScratch(scratch);
    assertThat(scratch).doesNotExist();
    assertThatThrownBy(() -> store.discardScratch(store.root().resolve("artefacts")))
        .isInstanceOf(ArtefactUriException.class)
        .hasMessageContaining("not a scratch directory");
  }

  @Test
  void shouldRememberFinishedAttempts() throws Exception {
    FileArtefactStore store = new FileArtefactStore(tmp.resolve("store"));
    assertThat(store.isDone("run/a", 1)).isFalse();
    store.markDone("run/a", 1);
    assertThat(store.isDone("run/a", 1)).isTrue();
    assertThat(store.isDone("run/a", 2)).isFalse();
  }
}
