package io.distillery.runtime.artefact;

import com.fasterxml.jackson.databind.ObjectMapper;
import io.distillery.schemas.common.ArtefactRef;
import io.distillery.stage.ContentHash;
import io.distillery.stage.FileTrees;
import java.io.IOException;
import java.net.URI;
import java.net.URISyntaxException;
import java.nio.charset.StandardCharsets;
import java.nio.file.AtomicMoveNotSupportedException;
import java.nio.file.DirectoryNotEmptyException;
import java.nio.file.FileAlreadyExistsException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.UUID;

/**
 * The {@code file://} store: artefacts live under {@code <root>/artefacts/<sha[0:2]>/<sha>/<name>}.
 * Only {@code file:} URIs whose real path lies inside the root or one of the extra read-only roots
 * are followed; anything else ({@code ../} tricks, symlinks out, foreign schemes) is refused with
 * an {@link ArtefactUriException}.
 */
public final class FileArtefactStore implements ArtefactStore {

  private static final ObjectMapper JSON = new ObjectMapper();

  private final Path root;
  private final List<Path> readRoots;

  public FileArtefactStore(Path root) throws IOException {
    this(root, List.of());
  }

  public FileArtefactStore(Path root, List<Path> extraReadRoots) throws IOException {
    Files.createDirectories(root);
    this.root = root.toRealPath();
    List<Path> roots = new ArrayList<>();
    roots.add(this.root);
    for (Path p : extraReadRoots) {
      roots.add(p.toRealPath());
    }
    this.readRoots = List.copyOf(roots);
    for (String d : List.of("artefacts", "scratch", "work", "cache", "jobs")) {
      Files.createDirectories(this.root.resolve(d));
    }
  }

  public Path root() {
    return root;
  }

  @Override
  public ArtefactRef put(Path source, String format, boolean copy) throws IOException {
    if (!Files.exists(source)) {
      throw new ArtefactUriException("cannot store " + source + ": it does not exist");
    }
    String sha = ContentHash.of(source);
    long bytes = ContentHash.sizeOf(source);
    Path dir = root.resolve("artefacts").resolve(sha.substring(0, 2)).resolve(sha);
    Path target = Files.isDirectory(source) ? dir : dir.resolve(source.getFileName().toString());
    if (!Files.exists(dir)) {
      Path staging = root.resolve("scratch").resolve("put-" + UUID.randomUUID());
      Path stagedTarget =
          Files.isDirectory(source) ? staging : staging.resolve(source.getFileName().toString());
      Files.createDirectories(staging);
      if (copy) {
        copyTree(source, stagedTarget);
      } else {
        moveOrCopy(source, stagedTarget);
      }
      Files.createDirectories(dir.getParent());
      try {
        Files.move(staging, dir, StandardCopyOption.ATOMIC_MOVE);
      } catch (FileAlreadyExistsException | DirectoryNotEmptyException e) {
        deleteTree(staging); // someone stored the same content first
      }
    } else if (!copy) {
      deleteTree(source);
    }
    return ArtefactRef.newBuilder()
        .setUri(target.toUri().toString())
        .setSha256(sha)
        .setBytes(bytes)
        .setFormat(format)
        .build();
  }

  @Override
  public Path resolve(ArtefactRef ref) throws IOException {
    Path p = resolve(ref.getUri());
    if (!Files.exists(p)) {
      throw new ArtefactUriException("artefact " + ref.getUri() + " is missing from the store");
    }
    if (ref.getBytes() > 0 && ContentHash.sizeOf(p) != ref.getBytes()) {
      throw new ArtefactUriException(
          "artefact "
              + ref.getUri()
              + " has "
              + ContentHash.sizeOf(p)
              + " bytes but its reference says "
              + ref.getBytes()
              + ": it was changed or truncated");
    }
    return p;
  }

  @Override
  public Path resolve(String uri) throws IOException {
    URI u;
    try {
      u = new URI(uri);
    } catch (URISyntaxException e) {
      throw new ArtefactUriException("not a URI: '" + uri + "' (" + e.getReason() + ")");
    }
    if (u.getScheme() == null || !u.getScheme().equals("file")) {
      throw new ArtefactUriException(
          "unsupported artefact URI scheme in '" + uri + "': only file:// is configured");
    }
    if (u.getRawPath() == null
        || u.getRawPath().contains("/../")
        || u.getRawPath().endsWith("/..")) {
      throw new ArtefactUriException(
          "artefact URI '" + uri + "' contains '..': path traversal is refused");
    }
    if (u.getAuthority() != null
        && !u.getAuthority().isEmpty()
        && !u.getAuthority().equals("localhost")) {
      throw new ArtefactUriException(
          "artefact URI '" + uri + "' names a remote host: only local files are allowed");
    }
    Path p = Path.of(u.getPath()).normalize();
    Path real = Files.exists(p) ? p.toRealPath() : p;
    for (Path r : readRoots) {
      if (real.startsWith(r)) {
        return real;
      }
    }
    throw new ArtefactUriException(
        "artefact URI '" + uri + "' is outside the store's roots " + readRoots);
  }

  @Override
  public Path newScratch() throws IOException {
    return Files.createDirectories(root.resolve("scratch").resolve(UUID.randomUUID().toString()));
  }

  @Override
  public void discardScratch(Path scratch) throws IOException {
    if (!Files.exists(scratch)) {
      return; // the stage returned the scratch directory itself as an output: it was moved into the
      // store
    }
    Path real = scratch.toRealPath();
    if (!real.startsWith(root.resolve("scratch")) || real.equals(root.resolve("scratch"))) {
      throw new ArtefactUriException("not a scratch directory of this store: " + scratch);
    }
    deleteTree(real);
  }

  @Override
  public Path workDir(String jobId) throws IOException {
    return Files.createDirectories(root.resolve("work").resolve(ContentHash.ofString(jobId)));
  }

  @Override
  public Optional<CachedResult> cached(String cacheKey) {
    Path f = root.resolve("cache").resolve(cacheKey + ".json");
    if (!Files.exists(f)) {
      return Optional.empty();
    }
    try {
      CacheEntry e = JSON.readValue(f.toFile(), CacheEntry.class);
      List<ArtefactRef> refs = new ArrayList<>();
      for (CacheEntry.Ref r : e.outputs()) {
        ArtefactRef ref =
            ArtefactRef.newBuilder()
                .setUri(r.uri())
                .setSha256(r.sha256())
                .setBytes(r.bytes())
                .setFormat(r.format())
                .build();
        resolve(ref);
        refs.add(ref);
      }
      return Optional.of(new CachedResult(refs, e.metrics()));
    } catch (IOException e) {
      return Optional.empty(); // an output was removed or the entry is unreadable: recompute
    }
  }

  @Override
  public void remember(String cacheKey, CachedResult result) throws IOException {
    List<CacheEntry.Ref> refs =
        result.outputs().stream()
            .map(r -> new CacheEntry.Ref(r.getUri(), r.getSha256(), r.getBytes(), r.getFormat()))
            .toList();
    writeAtomically(
        root.resolve("cache").resolve(cacheKey + ".json"),
        JSON.writeValueAsBytes(new CacheEntry(refs, result.metrics())));
  }

  @Override
  public void markDone(String jobId, int attempt) throws IOException {
    Path dir = Files.createDirectories(root.resolve("jobs").resolve(ContentHash.ofString(jobId)));
    writeAtomically(
        dir.resolve("attempt-" + attempt + ".done"), jobId.getBytes(StandardCharsets.UTF_8));
  }

  @Override
  public boolean isDone(String jobId, int attempt) {
    return Files.exists(
        root.resolve("jobs")
            .resolve(ContentHash.ofString(jobId))
            .resolve("attempt-" + attempt + ".done"));
  }

  private record CacheEntry(List<Ref> outputs, Map<String, Double> metrics) {
    private record Ref(String uri, String sha256, long bytes, String format) {}
  }

  private void writeAtomically(Path target, byte[] content) throws IOException {
    Path tmp = target.resolveSibling(target.getFileName() + "." + UUID.randomUUID() + ".tmp");
    Files.write(tmp, content);
    Files.move(tmp, target, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
  }

  private static void moveOrCopy(Path source, Path target) throws IOException {
    try {
      Files.move(source, target, StandardCopyOption.ATOMIC_MOVE);
    } catch (AtomicMoveNotSupportedException | DirectoryNotEmptyException e) {
      copyTree(source, target);
      deleteTree(source);
    }
  }

  static void copyTree(Path source, Path target) throws IOException {
    FileTrees.copy(source, target);
  }

  static void deleteTree(Path p) throws IOException {
    FileTrees.delete(p);
  }
}
