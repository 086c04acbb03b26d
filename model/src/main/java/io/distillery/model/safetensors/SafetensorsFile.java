package io.distillery.model.safetensors;

import io.distillery.model.CorruptCheckpointException;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.channels.FileChannel;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.NoSuchElementException;
import java.util.Objects;
import java.util.Set;
import java.util.concurrent.atomic.AtomicBoolean;

/**
 * One memory-mapped safetensors file with a validated header. The mapping lives in a shared {@link
 * Arena}, so files over 2 GiB work and the views returned by {@link #segment(String)} may be read
 * from any thread until {@link #close()}, after which any access through them throws {@link
 * IllegalStateException}.
 *
 * <p>Opening checks everything the format promises (see {@link HeaderParser}); a file that opens
 * can be read without bounds surprises.
 */
public final class SafetensorsFile implements AutoCloseable {

  /** Header cap, as in the reference implementation ({@code MAX_HEADER_SIZE} = 100 MB). */
  public static final long DEFAULT_MAX_HEADER_BYTES = 100_000_000L;

  private final Path path;
  private final Arena arena;
  private final MemorySegment data;
  private final Map<String, String> metadata;
  private final List<TensorInfo> tensors;
  private final Map<String, TensorInfo> byName;
  private final AtomicBoolean closed = new AtomicBoolean();

  private SafetensorsFile(Path path, Arena arena, MemorySegment data, HeaderParser.Header header) {
    this.path = path;
    this.arena = arena;
    this.data = data;
    this.metadata = header.metadata();
    this.tensors = header.tensors();
    Map<String, TensorInfo> index = new LinkedHashMap<>();
    for (TensorInfo tensor : tensors) {
      index.put(tensor.name(), tensor);
    }
    this.byName = Collections.unmodifiableMap(index);
  }

  /** Opens and validates {@code file} with the default header cap. */
  public static SafetensorsFile open(Path file) throws IOException {
    return open(file, DEFAULT_MAX_HEADER_BYTES);
  }

  /**
   * Opens and validates {@code file}.
   *
   * @param maxHeaderBytes refuse headers longer than this (the header is copied to the heap)
   * @throws CorruptCheckpointException if the file does not follow the format
   * @throws IOException if the file cannot be read
   */
  public static SafetensorsFile open(Path file, long maxHeaderBytes) throws IOException {
    Objects.requireNonNull(file, "file");
    if (maxHeaderBytes < 2 || maxHeaderBytes > DEFAULT_MAX_HEADER_BYTES * 20) {
      throw new IllegalArgumentException(
          "maxHeaderBytes must be in [2, 2e9], got " + maxHeaderBytes);
    }
    Arena arena = Arena.ofShared();
    try (FileChannel channel = FileChannel.open(file, StandardOpenOption.READ)) {
      long size = channel.size();
      MemorySegment mapped =
          size == 0
              ? MemorySegment.NULL
              : channel.map(FileChannel.MapMode.READ_ONLY, 0, size, arena);
      HeaderParser.Header header = HeaderParser.parse(file, mapped, maxHeaderBytes);
      MemorySegment data = mapped.asSlice(header.dataStart(), header.dataLength()).asReadOnly();
      return new SafetensorsFile(file, arena, data, header);
    } catch (IOException | RuntimeException e) {
      arena.close();
      throw e;
    }
  }

  public Path path() {
    return path;
  }

  /** The {@code __metadata__} entries (empty when the file has none). */
  public Map<String, String> metadata() {
    return metadata;
  }

  /** Every tensor, in data-buffer order. */
  public List<TensorInfo> tensors() {
    return tensors;
  }

  public Set<String> names() {
    return byName.keySet();
  }

  public boolean contains(String name) {
    return byName.containsKey(name);
  }

  /**
   * The header entry of {@code name}.
   *
   * @throws NoSuchElementException if the file has no such tensor
   */
  public TensorInfo info(String name) {
    TensorInfo info = byName.get(name);
    if (info == null) {
      throw new NoSuchElementException(path + ": no tensor '" + name + "'");
    }
    return info;
  }

  /** A read-only view of the tensor's bytes, valid until this file is closed. */
  public MemorySegment segment(String name) {
    TensorInfo info = info(name);
    return data.asSlice(info.begin(), info.byteSize());
  }

  /** A copy of the tensor's bytes (little-endian, as stored). */
  public byte[] bytes(String name) {
    MemorySegment segment = segment(name);
    if (segment.byteSize() > TensorCodec.MAX_ARRAY_LENGTH) {
      throw new IllegalArgumentException(
          path
              + ": tensor '"
              + name
              + "' is "
              + segment.byteSize()
              + " bytes, too large for a byte[]; use segment()");
    }
    return segment.toArray(ValueLayout.JAVA_BYTE);
  }

  /** The tensor widened to float (F16 and BF16 exactly; integer types as Java converts them). */
  public float[] floats(String name) {
    TensorInfo info = info(name);
    return TensorCodec.decodeFloats(data.asSlice(info.begin(), info.byteSize()), info.dtype());
  }

  /** Unmaps the file; views from {@link #segment(String)} become unusable. Idempotent. */
  @Override
  public void close() {
    if (closed.compareAndSet(false, true)) {
      arena.close();
    }
  }

  @Override
  public String toString() {
    return "SafetensorsFile[" + path + ", " + tensors.size() + " tensors]";
  }
}
