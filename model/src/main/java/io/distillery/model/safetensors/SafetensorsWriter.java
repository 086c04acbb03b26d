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
import java.util.Arrays;
import java.util.Map;
import java.util.Objects;
import java.util.TreeMap;

/**
 * Writes safetensors files: tensors in sorted name order, contiguous, with {@code __metadata__}
 * first in the header and the header padded with spaces so the data buffer starts 8-byte aligned.
 * The file appears atomically (written to a temporary sibling, then moved), so a reader never sees
 * a half-written checkpoint.
 */
public final class SafetensorsWriter {

  private static final int CHUNK_BYTES = 1 << 20;

  private SafetensorsWriter() {}

  /**
   * Writes {@code tensors} and {@code metadata} to {@code file}, replacing it if it exists. Each
   * {@link TensorSource#bytes()} is called once, in name order, so lazy sources stream.
   *
   * @throws IllegalArgumentException if a name is empty or {@code __metadata__}, or a source's
   *     bytes do not match its dtype and shape
   */
  public static void write(
      Path file, Map<String, ? extends TensorSource> tensors, Map<String, String> metadata)
      throws IOException {
    write(file, tensors, metadata, true);
  }

  /**
   * As {@link #write(Path, Map, Map)}; with {@code sync} false the file is not forced to the device
   * before it is moved into place (for work files whose loss a reader detects and recovers from,
   * and that are usually deleted before the kernel would have written them back at all).
   */
  public static void write(
      Path file,
      Map<String, ? extends TensorSource> tensors,
      Map<String, String> metadata,
      boolean sync)
      throws IOException {
    Objects.requireNonNull(file, "file");
    TreeMap<String, TensorSource> sorted = new TreeMap<>(tensors);
    byte[] header = header(sorted, metadata);
    Path target = file.toAbsolutePath();
    Path temp =
        target.resolveSibling(
            "." + target.getFileName() + "." + Long.toHexString(System.nanoTime()) + ".partial");
    try {
      try (FileChannel channel =
          FileChannel.open(temp, StandardOpenOption.WRITE, StandardOpenOption.CREATE_NEW)) {
        ByteBuffer prefix =
            ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN).putLong(header.length).flip();
        writeFully(channel, prefix);
        writeFully(channel, ByteBuffer.wrap(header));
        ByteBuffer chunk = ByteBuffer.allocateDirect(CHUNK_BYTES);
        for (Map.Entry<String, TensorSource> entry : sorted.entrySet()) {
          TensorSource source = entry.getValue();
          long expected = byteLength(entry.getKey(), source);
          MemorySegment bytes = source.bytes();
          if (bytes.byteSize() != expected) {
            throw new IllegalArgumentException(
                "tensor '"
                    + entry.getKey()
                    + "' supplied "
                    + bytes.byteSize()
                    + " bytes but "
                    + source.dtype()
                    + Arrays.toString(source.shape())
                    + " needs "
                    + expected);
          }
          ShardedCheckpointWriter.writeSegment(channel, bytes, chunk);
        }
        if (sync) {
          channel.force(true);
        }
      }
      try {
        Files.move(
            temp, target, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
      } catch (AtomicMoveNotSupportedException e) {
        Files.move(temp, target, StandardCopyOption.REPLACE_EXISTING);
      }
    } finally {
      Files.deleteIfExists(temp);
    }
  }

  /** The header JSON, padded with spaces to a multiple of 8 bytes. */
  static byte[] header(TreeMap<String, TensorSource> sorted, Map<String, String> metadata) {
    ObjectNode root = HeaderParser.JSON.createObjectNode();
    if (metadata != null && !metadata.isEmpty()) {
      ObjectNode meta = root.putObject(HeaderParser.METADATA_KEY);
      new TreeMap<>(metadata)
          .forEach((key, value) -> meta.put(key, Objects.requireNonNull(value, key)));
    }
    long offset = 0;
    for (Map.Entry<String, TensorSource> entry : sorted.entrySet()) {
      String name = entry.getKey();
      if (name.isEmpty() || name.equals(HeaderParser.METADATA_KEY)) {
        throw new IllegalArgumentException("invalid tensor name '" + name + "'");
      }
      TensorSource source = entry.getValue();
      long length = byteLength(name, source);
      ObjectNode node = root.putObject(name);
      node.put("dtype", source.dtype().name());
      ArrayNode shape = node.putArray("shape");
      for (long dim : source.shape()) {
        shape.add(dim);
      }
      node.putArray("data_offsets").add(offset).add(offset + length);
      offset += length;
    }
    byte[] json = root.toString().getBytes(StandardCharsets.UTF_8);
    int padded = (json.length + 7) & ~7;
    byte[] header = Arrays.copyOf(json, padded);
    Arrays.fill(header, json.length, padded, (byte) ' ');
    return header;
  }

  private static long byteLength(String name, TensorSource source) {
    for (long dim : source.shape()) {
      if (dim < 0) {
        throw new IllegalArgumentException(
            "tensor '" + name + "' has a negative dimension " + Arrays.toString(source.shape()));
      }
    }
    return Math.multiplyExact(source.elementCount(), source.dtype().byteSize());
  }

  private static void writeFully(FileChannel channel, ByteBuffer buffer) throws IOException {
    while (buffer.hasRemaining()) {
      channel.write(buffer);
    }
  }
}
