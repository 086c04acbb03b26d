package io.distillery.model.safetensors;

import com.fasterxml.jackson.core.JacksonException;
import com.fasterxml.jackson.databind.JsonNode;
import io.distillery.model.CheckpointException;
import io.distillery.model.CorruptCheckpointException;
import io.distillery.model.UnsafeCheckpointException;
import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.nio.file.Files;
import java.nio.file.InvalidPathException;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.SortedSet;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.stream.Stream;

/**
 * The weights of a Hugging Face model directory: either one {@code model.safetensors} or the shards
 * listed in {@code model.safetensors.index.json} ({@code {"metadata": {...}, "weight_map": {tensor:
 * file}}}). Owns the mapped files and gives tensor lookup by name across them.
 *
 * <p>Refuses, before reading any weight: pickled checkpoints ({@code pytorch_model.bin}, {@code
 * *.pt}, {@code *.pth}, {@code *.ckpt}, {@code *.pkl}), which can execute code when loaded; and
 * index entries whose file name is absolute or climbs out of the directory. Symbolic links inside
 * the directory are followed, because the Hugging Face cache stores snapshot files as links to
 * {@code ../../blobs}.
 */
public final class Checkpoint implements AutoCloseable {

  public static final String SINGLE_FILE = "model.safetensors";
  public static final String INDEX_FILE = "model.safetensors.index.json";

  private static final List<String> PICKLE_SUFFIXES =
      List.of(".bin", ".pt", ".pth", ".ckpt", ".pkl");
  private static final long MAX_INDEX_BYTES = SafetensorsFile.DEFAULT_MAX_HEADER_BYTES;

  private final Path directory;
  private final List<SafetensorsFile> files;
  private final Map<String, SafetensorsFile> location;
  private final Map<String, String> metadata;

  private Checkpoint(
      Path directory,
      List<SafetensorsFile> files,
      Map<String, SafetensorsFile> location,
      Map<String, String> metadata) {
    this.directory = directory;
    this.files = List.copyOf(files);
    this.location = Collections.unmodifiableMap(location);
    this.metadata = Collections.unmodifiableMap(metadata);
  }

  /**
   * Opens the weights at {@code path}: a model directory, a {@code .safetensors} file, or an index
   * file.
   *
   * @throws UnsafeCheckpointException for pickled checkpoints and index paths that escape the
   *     directory
   * @throws CorruptCheckpointException for malformed files, missing shards, or tensors the index
   *     names but the shard lacks
   */
  public static Checkpoint open(Path path) throws IOException {
    Path absolute = path.toAbsolutePath().normalize();
    if (Files.isDirectory(absolute)) {
      return openDirectory(absolute);
    }
    if (!Files.exists(absolute)) {
      throw new NoSuchFileException(
          absolute.toString(), null, "no model directory or weights file here");
    }
    String name = absolute.getFileName().toString();
    if (isPickled(name)) {
      throw refusePickle(absolute);
    }
    if (name.equals(INDEX_FILE)) {
      return openSharded(absolute.getParent(), absolute);
    }
    if (name.endsWith(".safetensors")) {
      return openSingle(absolute.getParent(), absolute);
    }
    throw new CorruptCheckpointException(
        absolute, "not a .safetensors file, an index or a model directory");
  }

  /** Whether a file name is one of the pickled PyTorch formats this platform never loads. */
  public static boolean isPickled(String fileName) {
    String lower = fileName.toLowerCase(Locale.ROOT);
    return PICKLE_SUFFIXES.stream().anyMatch(lower::endsWith);
  }

  private static Checkpoint openDirectory(Path directory) throws IOException {
    Path index = directory.resolve(INDEX_FILE);
    if (Files.isRegularFile(index)) {
      return openSharded(directory, index);
    }
    Path single = directory.resolve(SINGLE_FILE);
    if (Files.isRegularFile(single)) {
      return openSingle(directory, single);
    }
    List<Path> safetensors = new ArrayList<>();
    List<Path> pickled = new ArrayList<>();
    try (Stream<Path> entries = Files.list(directory)) {
      for (Path entry : (Iterable<Path>) entries.sorted()::iterator) {
        String name = entry.getFileName().toString();
        if (name.endsWith(".safetensors")) {
          safetensors.add(entry);
        } else if (isPickled(name) || name.endsWith(".bin.index.json")) {
          pickled.add(entry);
        }
      }
    }
    if (safetensors.size() == 1) {
      return openSingle(directory, safetensors.getFirst());
    }
    if (safetensors.isEmpty() && !pickled.isEmpty()) {
      throw refusePickle(pickled.getFirst());
    }
    throw new CorruptCheckpointException(
        directory,
        "no "
            + SINGLE_FILE
            + " or "
            + INDEX_FILE
            + (safetensors.isEmpty()
                ? ""
                : " to say which of " + safetensors.size() + " .safetensors files to use"));
  }

  private static UnsafeCheckpointException refusePickle(Path file) {
    return new UnsafeCheckpointException(
        file,
        "pickled checkpoint refused: pickle files can execute arbitrary code"
            + " when loaded, so they are never loaded; convert the model to safetensors (for example"
            + " transformers' save_pretrained(dir, safe_serialization=True)) and register that instead");
  }

  private static Checkpoint openSingle(Path directory, Path file) throws IOException {
    SafetensorsFile weights = SafetensorsFile.open(file);
    Map<String, SafetensorsFile> location = new TreeMap<>();
    for (String name : weights.names()) {
      location.put(name, weights);
    }
    return new Checkpoint(directory, List.of(weights), location, weights.metadata());
  }

  private static Checkpoint openSharded(Path directory, Path indexFile) throws IOException {
    if (Files.size(indexFile) > MAX_INDEX_BYTES) {
      throw new CorruptCheckpointException(
          indexFile, "index is larger than " + MAX_INDEX_BYTES + " bytes");
    }
    JsonNode root;
    try {
      root = HeaderParser.JSON.readTree(Files.readAllBytes(indexFile));
    } catch (JacksonException e) {
      throw new CorruptCheckpointException(
          indexFile, "index is not valid JSON: " + e.getOriginalMessage(), e);
    }
    if (root == null || !root.isObject()) {
      throw new CorruptCheckpointException(indexFile, "index is not a JSON object");
    }
    JsonNode weightMap = root.get("weight_map");
    if (weightMap == null || !weightMap.isObject() || weightMap.isEmpty()) {
      throw new CorruptCheckpointException(
          indexFile, "index has no weight_map object with at least one tensor");
    }
    Map<String, String> metadata = new LinkedHashMap<>();
    JsonNode meta = root.get("metadata");
    if (meta != null && !meta.isNull()) {
      if (!meta.isObject()) {
        throw new CorruptCheckpointException(indexFile, "index metadata is not a JSON object");
      }
      meta.properties()
          .forEach(
              e ->
                  metadata.put(
                      e.getKey(),
                      e.getValue().isTextual()
                          ? e.getValue().textValue()
                          : e.getValue().toString()));
    }
    Map<String, Path> shardOf = new TreeMap<>();
    for (Map.Entry<String, JsonNode> entry : weightMap.properties()) {
      if (!entry.getValue().isTextual()) {
        throw new CorruptCheckpointException(
            indexFile, "weight_map entry for '" + entry.getKey() + "' is not a file name");
      }
      shardOf.put(entry.getKey(), confine(directory, indexFile, entry.getValue().textValue()));
    }
    Map<Path, SafetensorsFile> shards = new LinkedHashMap<>();
    Map<String, SafetensorsFile> location = new TreeMap<>();
    try {
      for (Map.Entry<String, Path> entry : shardOf.entrySet()) {
        Path shardPath = entry.getValue();
        SafetensorsFile shard = shards.get(shardPath);
        if (shard == null) {
          if (!Files.isRegularFile(shardPath)) {
            throw new CorruptCheckpointException(
                indexFile,
                "shard "
                    + directory.relativize(shardPath)
                    + " listed for '"
                    + entry.getKey()
                    + "' does not exist");
          }
          shard = SafetensorsFile.open(shardPath);
          shards.put(shardPath, shard);
        }
        if (!shard.contains(entry.getKey())) {
          throw new CorruptCheckpointException(
              indexFile,
              "tensor '"
                  + entry.getKey()
                  + "' is mapped to "
                  + directory.relativize(shardPath)
                  + " but that shard does not contain it");
        }
        location.put(entry.getKey(), shard);
      }
    } catch (IOException | RuntimeException e) {
      shards.values().forEach(SafetensorsFile::close);
      throw e;
    }
    return new Checkpoint(directory, new ArrayList<>(shards.values()), location, metadata);
  }

  /** Resolves an index's shard name, refusing anything that could leave the model directory. */
  private static Path confine(Path directory, Path indexFile, String shardName)
      throws CheckpointException {
    if (shardName.isEmpty()) {
      throw new CorruptCheckpointException(indexFile, "weight_map names an empty file");
    }
    Path relative;
    try {
      relative = Path.of(shardName);
    } catch (InvalidPathException e) {
      throw new UnsafeCheckpointException(
          indexFile, "shard name '" + shardName + "' is not a valid path");
    }
    boolean climbs = false;
    for (Path element : relative) {
      climbs |= element.toString().equals("..");
    }
    Path resolved = directory.resolve(relative).normalize();
    if (relative.isAbsolute()
        || climbs
        || shardName.startsWith("~")
        || !resolved.startsWith(directory)) {
      throw new UnsafeCheckpointException(
          indexFile,
          "shard name '"
              + shardName
              + "' escapes the model directory; shards must be files inside it");
    }
    if (isPickled(shardName)) {
      throw refusePickle(resolved);
    }
    if (!shardName.endsWith(".safetensors")) {
      throw new CorruptCheckpointException(
          indexFile, "shard name '" + shardName + "' is not a .safetensors file");
    }
    return resolved;
  }

  /** The model directory. */
  public Path directory() {
    return directory;
  }

  /** The opened weight files. */
  public List<Path> files() {
    return files.stream().map(SafetensorsFile::path).toList();
  }

  /**
   * {@code __metadata__} of a single file, or the index's {@code metadata} (non-strings as JSON).
   */
  public Map<String, String> metadata() {
    return metadata;
  }

  /** Every tensor name, sorted. */
  public SortedSet<String> tensorNames() {
    return Collections.unmodifiableSortedSet(new TreeSet<>(location.keySet()));
  }

  public boolean contains(String name) {
    return location.containsKey(name);
  }

  /**
   * The header entry of {@code name}.
   *
   * @throws CorruptCheckpointException if the checkpoint has no such tensor (a model that needs it
   *     cannot be built from this checkpoint)
   */
  public TensorInfo info(String name) throws CorruptCheckpointException {
    return file(name).info(name);
  }

  /** The tensor widened to float; see {@link SafetensorsFile#floats(String)}. */
  public float[] floats(String name) throws CorruptCheckpointException {
    return file(name).floats(name);
  }

  /** A copy of the tensor's stored bytes. */
  public byte[] bytes(String name) throws CorruptCheckpointException {
    return file(name).bytes(name);
  }

  /** A read-only view of the tensor's stored bytes, valid until {@link #close()}. */
  public MemorySegment segment(String name) throws CorruptCheckpointException {
    return file(name).segment(name);
  }

  private SafetensorsFile file(String name) throws CorruptCheckpointException {
    SafetensorsFile file = location.get(name);
    if (file == null) {
      throw new CorruptCheckpointException(directory, "checkpoint has no tensor '" + name + "'");
    }
    return file;
  }

  @Override
  public void close() {
    files.forEach(SafetensorsFile::close);
  }

  @Override
  public String toString() {
    return "Checkpoint["
        + directory
        + ", "
        + files.size()
        + " files, "
        + location.size()
        + " tensors]";
  }
}
