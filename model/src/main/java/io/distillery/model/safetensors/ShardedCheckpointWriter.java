package io.distillery.model.safetensors;

import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.AtomicMoveNotSupportedException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Objects;
import java.util.Set;
import java.util.TreeMap;

/**
 * Writes a Hugging Face checkpoint tensor by tensor, as the tensors come, so that a model larger
 * than memory can be written while it is produced one layer at a time. Shards are cut at {@code
 * maxShardBytes} of data (5 GB by default, as transformers' {@code save_pretrained}; a tensor
 * larger than that gets a shard of its own) and named as transformers names them: {@code
 * model.safetensors} when one shard suffices, else {@code model-00001-of-00003.safetensors} ...
 * with {@code model.safetensors.index.json} ({@code {"metadata": {"total_size": N}, "weight_map":
 * {tensor: file}}}).
 *
 * <p>A safetensors header names every tensor's offsets before the data, so each shard's data is
 * streamed to a hidden temporary file beside the output and, on {@link #finish()}, copied after its
 * header ({@code FileChannel.transferTo}) into the final file, which appears by an atomic move. The
 * index is written last: a reader never sees a checkpoint whose shards are incomplete. Closing an
 * unfinished writer deletes its temporary files.
 */
public final class ShardedCheckpointWriter implements AutoCloseable {

  /** transformers' default {@code max_shard_size="5GB"} (decimal). */
  public static final long DEFAULT_MAX_SHARD_BYTES = 5_000_000_000L;

  private static final int CHUNK_BYTES = 1 << 20;

  private final Path directory;
  private final long maxShardBytes;
  private final Map<String, String> metadata;
  private final List<Shard> shards = new ArrayList<>();
  private final Set<String> names = new HashSet<>();
  private final ByteBuffer chunk = ByteBuffer.allocateDirect(CHUNK_BYTES);
  private boolean finished;

  /**
   * One shard under construction: its entries in data order and the temporary file holding its
   * data.
   */
  private static final class Shard {
    final Path data;
    final FileChannel channel;
    final Map<String, TensorInfo> entries = new LinkedHashMap<>();
    long bytes;

    Shard(Path data) throws IOException {
      this.data = data;
      this.channel =
          FileChannel.open(data, StandardOpenOption.WRITE, StandardOpenOption.CREATE_NEW);
    }
  }

  /**
   * @param directory the model directory (created if absent); existing weight files of the same
   *     names are replaced
   * @param maxShardBytes data bytes per shard at most (a larger single tensor gets its own shard)
   * @param metadata {@code __metadata__} of every shard (e.g. {@code format=pt}, which transformers
   *     requires)
   */
  public ShardedCheckpointWriter(Path directory, long maxShardBytes, Map<String, String> metadata)
      throws IOException {
    if (maxShardBytes <= 0) {
      throw new IllegalArgumentException("maxShardBytes must be positive, got " + maxShardBytes);
    }
    this.directory = Files.createDirectories(directory.toAbsolutePath());
    this.maxShardBytes = maxShardBytes;
    this.metadata = new TreeMap<>(metadata);
  }

  /** A writer with 5 GB shards and metadata {@code format=pt}. */
  public ShardedCheckpointWriter(Path directory) throws IOException {
    this(directory, DEFAULT_MAX_SHARD_BYTES, Map.of("format", "pt"));
  }

  /**
   * Appends one tensor; its bytes are asked for once, now, and copied out in 1 MiB chunks.
   *
   * @throws IllegalArgumentException if the name is empty, reserved or already written, or the
   *     bytes do not match dtype x shape
   */
  public void write(String name, TensorSource source) throws IOException {
    if (finished) {
      throw new IllegalStateException("the checkpoint is already finished");
    }
    checkName(name);
    if (!names.add(name)) {
      throw new IllegalArgumentException("tensor '" + name + "' was already written");
    }
    long length = Math.multiplyExact(source.elementCount(), source.dtype().byteSize());
    Shard shard = shards.isEmpty() ? null : shards.getLast();
    if (shard == null || (shard.bytes > 0 && shard.bytes + length > maxShardBytes)) {
      shard =
          new Shard(
              directory.resolve(
                  ".shard-"
                      + (shards.size() + 1)
                      + "-"
                      + Long.toHexString(System.nanoTime())
                      + ".partial"));
      shards.add(shard);
    }
    MemorySegment bytes = suppliedBytes(name, source, length);
    writeSegment(shard.channel, bytes, chunk);
    shard.entries.put(
        name,
        new TensorInfo(name, source.dtype(), source.shape(), shard.bytes, shard.bytes + length));
    shard.bytes += length;
  }

  private static void checkName(String name) {
    if (name == null || name.isEmpty() || name.equals(HeaderParser.METADATA_KEY)) {
      throw new IllegalArgumentException("invalid tensor name '" + name + "'");
    }
  }

  /** The source's bytes, asked for once, which must be {@code length} long. */
  private static MemorySegment suppliedBytes(String name, TensorSource source, long length)
      throws IOException {
    MemorySegment bytes = source.bytes();
    if (bytes.byteSize() != length) {
      throw new IllegalArgumentException(
          "tensor '"
              + name
              + "' supplied "
              + bytes.byteSize()
              + " bytes but "
              + source.dtype()
              + Arrays.toString(source.shape())
              + " needs "
              + length);
    }
    return bytes;
  }

  /**
   * Writes {@code segment} to {@code channel}: a native segment (a mapped file, off-heap memory)
   * straight from its memory, a heap segment through {@code chunk} (a direct buffer of {@link
   * #CHUNK_BYTES}), so that no temporary direct buffer of the tensor's size is made.
   */
  static void writeSegment(FileChannel channel, MemorySegment segment, ByteBuffer chunk)
      throws IOException {
    long length = segment.byteSize();
    if (segment.isNative()) {
      for (long done = 0; done < length; ) {
        int n = (int) Math.min(1L << 30, length - done);
        ByteBuffer view = segment.asSlice(done, n).asByteBuffer();
        while (view.hasRemaining()) {
          channel.write(view);
        }
        done += n;
      }
      return;
    }
    MemorySegment chunkSegment = MemorySegment.ofBuffer(chunk.clear());
    for (long done = 0; done < length; ) {
      int n = (int) Math.min(chunk.capacity(), length - done);
      MemorySegment.copy(segment, done, chunkSegment, 0, n);
      chunk.clear().limit(n);
      while (chunk.hasRemaining()) {
        channel.write(chunk);
      }
      done += n;
    }
  }

  /**
   * Writes a whole checkpoint whose tensors are all at hand (their dtypes and shapes; bytes are
   * asked for once each, in order, while they are written): the same files, byte for byte, as a
   * writer given each tensor in order with {@link #write} and then {@link #finish}, but each shard
   * goes straight into its final file, header first, without the temporary data file and its copy.
   * Each shard appears by an atomic move once complete and synced; the index comes last.
   *
   * @param tensors in write order
   * @return the weight files written, in shard order (the index last when there is one)
   * @throws IllegalArgumentException if a name is empty or reserved, or a source's bytes do not
   *     match its dtype and shape
   * @throws IllegalStateException if {@code tensors} is empty
   */
  public static List<Path> writeAll(
      Path directory,
      long maxShardBytes,
      Map<String, String> metadata,
      Map<String, ? extends TensorSource> tensors)
      throws IOException {
    if (maxShardBytes <= 0) {
      throw new IllegalArgumentException("maxShardBytes must be positive, got " + maxShardBytes);
    }
    if (tensors.isEmpty()) {
      throw new IllegalStateException("no tensor was written");
    }
    Path dir = Files.createDirectories(directory.toAbsolutePath());
    Map<String, String> meta = new TreeMap<>(metadata);
    // the shards as write() cuts them
    List<Map<String, TensorInfo>> shards = new ArrayList<>();
    long bytes = 0;
    for (Map.Entry<String, ? extends TensorSource> e : tensors.entrySet()) {
      String name = e.getKey();
      checkName(name);
      TensorSource source = e.getValue();
      long length = Math.multiplyExact(source.elementCount(), source.dtype().byteSize());
      if (shards.isEmpty() || (bytes > 0 && bytes + length > maxShardBytes)) {
        shards.add(new LinkedHashMap<>());
        bytes = 0;
      }
      shards
          .getLast()
          .put(name, new TensorInfo(name, source.dtype(), source.shape(), bytes, bytes + length));
      bytes += length;
    }
    int count = shards.size();
    List<Path> files = new ArrayList<>();
    Map<String, String> weightMap = new TreeMap<>();
    long total = 0;
    ByteBuffer chunk = ByteBuffer.allocateDirect(CHUNK_BYTES);
    for (int i = 0; i < count; i++) {
      Map<String, TensorInfo> entries = shards.get(i);
      String fileName = shardName(i, count);
      Path target = dir.resolve(fileName);
      byte[] header = header(entries, meta);
      Path temp = target.resolveSibling("." + fileName + ".partial");
      try {
        try (FileChannel out =
            FileChannel.open(
                temp,
                StandardOpenOption.WRITE,
                StandardOpenOption.CREATE,
                StandardOpenOption.TRUNCATE_EXISTING)) {
          ByteBuffer prefix = ByteBuffer.allocate(8 + header.length).order(ByteOrder.LITTLE_ENDIAN);
          prefix.putLong(header.length).put(header).flip();
          while (prefix.hasRemaining()) {
            out.write(prefix);
          }
          for (TensorInfo info : entries.values()) {
            MemorySegment data =
                suppliedBytes(info.name(), tensors.get(info.name()), info.byteSize());
            writeSegment(out, data, chunk);
            weightMap.put(info.name(), fileName);
            total += info.byteSize();
          }
          out.force(true);
        }
        move(temp, target);
      } finally {
        Files.deleteIfExists(temp);
      }
      files.add(target);
    }
    writeIndex(dir, count, weightMap, total, files);
    return files;
  }

  private static String shardName(int shard, int count) {
    return count == 1
        ? Checkpoint.SINGLE_FILE
        : String.format(Locale.ROOT, "model-%05d-of-%05d.safetensors", shard + 1, count);
  }

  /**
   * The index when there is more than one shard (added to {@code files}); else a stale index is
   * deleted.
   */
  private static void writeIndex(
      Path directory, int count, Map<String, String> weightMap, long total, List<Path> files)
      throws IOException {
    Path index = directory.resolve(Checkpoint.INDEX_FILE);
    if (count > 1) {
      ObjectNode root = HeaderParser.JSON.createObjectNode();
      root.putObject("metadata").put("total_size", total);
      ObjectNode map = root.putObject("weight_map");
      weightMap.forEach(map::put);
      Path temp = directory.resolve("." + Checkpoint.INDEX_FILE + ".partial");
      Files.writeString(temp, root.toPrettyString() + "\n", StandardCharsets.UTF_8);
      move(temp, index);
      files.add(index);
    } else {
      Files.deleteIfExists(index); // a stale index would send readers to other files
    }
  }

  /**
   * Appends float values stored as {@code dtype} (F32, F16 or BF16; half types rounded to nearest
   * even in Java).
   */
  public void writeFloats(String name, DType dtype, long[] shape, float[] values)
      throws IOException {
    write(name, TensorData.ofFloats(dtype, shape, values));
  }

  /** Tensors written so far. */
  public int tensorCount() {
    return names.size();
  }

  /**
   * Writes the shard files (and the index when there is more than one) and deletes the temporary
   * data.
   *
   * @return the weight files written, in shard order (the index last when there is one)
   */
  public List<Path> finish() throws IOException {
    if (finished) {
      throw new IllegalStateException("the checkpoint is already finished");
    }
    if (shards.isEmpty()) {
      throw new IllegalStateException("no tensor was written");
    }
    finished = true;
    int count = shards.size();
    List<Path> files = new ArrayList<>();
    Map<String, String> weightMap = new TreeMap<>();
    long total = 0;
    for (int i = 0; i < count; i++) {
      Shard shard = shards.get(i);
      shard.channel.close();
      String fileName = shardName(i, count);
      Path target = directory.resolve(fileName);
      assemble(shard, target);
      files.add(target);
      for (String name : shard.entries.keySet()) {
        weightMap.put(name, fileName);
      }
      total += shard.bytes;
    }
    writeIndex(directory, count, weightMap, total, files);
    return files;
  }

  private void assemble(Shard shard, Path target) throws IOException {
    byte[] header = header(shard.entries, metadata);
    Path temp = target.resolveSibling("." + target.getFileName() + ".partial");
    try (FileChannel out =
            FileChannel.open(
                temp,
                StandardOpenOption.WRITE,
                StandardOpenOption.CREATE,
                StandardOpenOption.TRUNCATE_EXISTING);
        FileChannel in = FileChannel.open(shard.data, StandardOpenOption.READ)) {
      ByteBuffer prefix = ByteBuffer.allocate(8 + header.length).order(ByteOrder.LITTLE_ENDIAN);
      prefix.putLong(header.length).put(header).flip();
      while (prefix.hasRemaining()) {
        out.write(prefix);
      }
      long size = in.size();
      for (long done = 0; done < size; ) {
        done += in.transferTo(done, size - done, out);
      }
      out.force(true);
    }
    move(temp, target);
    Files.deleteIfExists(shard.data);
  }

  /**
   * The header JSON of one shard (offsets in write order), padded with spaces to a multiple of 8
   * bytes.
   */
  static byte[] header(Map<String, TensorInfo> entries, Map<String, String> metadata) {
    ObjectNode root = HeaderParser.JSON.createObjectNode();
    if (!metadata.isEmpty()) {
      ObjectNode meta = root.putObject(HeaderParser.METADATA_KEY);
      metadata.forEach((key, value) -> meta.put(key, Objects.requireNonNull(value, key)));
    }
    for (TensorInfo info : entries.values()) {
      ObjectNode node = root.putObject(info.name());
      node.put("dtype", info.dtype().name());
      ArrayNode shape = node.putArray("shape");
      for (long dim : info.shape()) {
        shape.add(dim);
      }
      node.putArray("data_offsets").add(info.begin()).add(info.end());
    }
    byte[] json = root.toString().getBytes(StandardCharsets.UTF_8);
    int padded = (json.length + 7) & ~7;
    byte[] header = Arrays.copyOf(json, padded);
    Arrays.fill(header, json.length, padded, (byte) ' ');
    return header;
  }

  private static void move(Path from, Path to) throws IOException {
    try {
      Files.move(from, to, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
    } catch (AtomicMoveNotSupportedException e) {
      Files.move(from, to, StandardCopyOption.REPLACE_EXISTING);
    }
  }

  /** Deletes the temporary data of an unfinished (or failed) checkpoint. */
  @Override
  public void close() throws IOException {
    IOException failure = null;
    for (Shard shard : shards) {
      try {
        shard.channel.close();
        Files.deleteIfExists(shard.data);
      } catch (IOException e) {
        if (failure == null) {
          failure = e;
        } else {
          failure.addSuppressed(e);
        }
      }
    }
    if (failure != null) {
      throw failure;
    }
  }
}
