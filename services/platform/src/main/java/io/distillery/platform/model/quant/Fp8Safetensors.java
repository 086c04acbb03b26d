package io.distillery.platform.model.quant;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.distillery.platform.model.CorruptCheckpointException;
import io.distillery.platform.model.safetensors.DType;
import io.distillery.platform.model.safetensors.TensorCodec;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Set;

/**
 * The safetensors dtype {@code F8_E4M3} for compressed-tensors' float-quantized weights, which the platform's
 * {@link DType} does not list: the writer stores the codes as U8 through the platform writer and then relabels those
 * tensors in the header; the reader parses the header itself and maps the file, so it accepts F8_E4M3 next to the
 * platform's types. Layout as the safetensors spec: u64 LE header length, JSON header (padded with spaces to 8
 * bytes), data; offsets are relative to the data start, so relabelling never moves data.
 */
final class Fp8Safetensors {

  static final String F8_E4M3 = "F8_E4M3";

  private static final ObjectMapper JSON = new ObjectMapper();

  private Fp8Safetensors() {}

  /** One tensor: its header dtype name, shape and bytes. */
  record Raw(String dtype, long[] shape, MemorySegment data) {

    float[] floats() {
      DType type = DType.fromHeaderName(dtype);
      if (type == null || !type.isFloatingPoint()) {
        throw new IllegalArgumentException("tensor is " + dtype + ", not floating point");
      }
      return TensorCodec.decodeFloats(data, type);
    }

    byte[] bytes() {
      return data.toArray(java.lang.foreign.ValueLayout.JAVA_BYTE);
    }
  }

  /** Rewrites the header of {@code file} so that {@code names} (written as U8) read as F8_E4M3. */
  static void relabelAsFp8(Path file, Set<String> names) throws IOException {
    if (names.isEmpty()) {
      return;
    }
    Path tmp = file.resolveSibling(file.getFileName() + ".tmp");
    try (FileChannel in = FileChannel.open(file, StandardOpenOption.READ);
        FileChannel out = FileChannel.open(tmp, StandardOpenOption.CREATE, StandardOpenOption.TRUNCATE_EXISTING,
            StandardOpenOption.WRITE)) {
      long headerLength = readHeaderLength(in, file);
      ByteBuffer headerBytes = ByteBuffer.allocate(Math.toIntExact(headerLength));
      in.read(headerBytes, 8);
      ObjectNode header = (ObjectNode) JSON.readTree(headerBytes.array());
      for (String name : names) {
        ObjectNode entry = (ObjectNode) header.get(name);
        if (entry == null || !"U8".equals(entry.path("dtype").asText())) {
          throw new IllegalStateException("tensor '" + name + "' is not a U8 tensor of " + file);
        }
        entry.put("dtype", F8_E4M3);
      }
      byte[] json = JSON.writeValueAsBytes(header);
      int padded = (json.length + 7) & ~7;
      ByteBuffer head = ByteBuffer.allocate(8 + padded).order(ByteOrder.LITTLE_ENDIAN);
      head.putLong(padded).put(json);
      while (head.hasRemaining()) {
        head.put((byte) ' ');
      }
      head.flip();
      while (head.hasRemaining()) {
        out.write(head);
      }
      long position = 8 + headerLength;
      long size = in.size() - position;
      long copied = 0;
      while (copied < size) {
        copied += in.transferTo(position + copied, size - copied, out);
      }
    }
    Files.move(tmp, file, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
  }

  /** Every tensor of a safetensors file, mapped into {@code arena}. */
  static Map<String, Raw> read(Path file, Arena arena) throws IOException {
    try (FileChannel channel = FileChannel.open(file, StandardOpenOption.READ)) {
      long headerLength = readHeaderLength(channel, file);
      ByteBuffer headerBytes = ByteBuffer.allocate(Math.toIntExact(headerLength));
      channel.read(headerBytes, 8);
      JsonNode header = JSON.readTree(new String(headerBytes.array(), StandardCharsets.UTF_8));
      MemorySegment mapped = channel.map(FileChannel.MapMode.READ_ONLY, 0, channel.size(), arena);
      long dataStart = 8 + headerLength;
      Map<String, Raw> out = new LinkedHashMap<>();
      for (Iterator<Map.Entry<String, JsonNode>> it = header.fields(); it.hasNext(); ) {
        Map.Entry<String, JsonNode> e = it.next();
        if (e.getKey().equals("__metadata__")) {
          continue;
        }
        JsonNode v = e.getValue();
        long[] shape = new long[v.path("shape").size()];
        for (int i = 0; i < shape.length; i++) {
          shape[i] = v.path("shape").get(i).asLong();
        }
        long begin = v.path("data_offsets").get(0).asLong();
        long end = v.path("data_offsets").get(1).asLong();
        if (begin < 0 || end < begin || dataStart + end > channel.size()) {
          throw new CorruptCheckpointException(file, "tensor '" + e.getKey() + "' lies outside the file");
        }
        out.put(e.getKey(), new Raw(v.path("dtype").asText(), shape, mapped.asSlice(dataStart + begin, end - begin)));
      }
      return out;
    }
  }

  private static long readHeaderLength(FileChannel channel, Path file) throws IOException {
    ByteBuffer b = ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN);
    channel.read(b, 0);
    b.flip();
    long length = b.getLong();
    if (length <= 0 || 8 + length > channel.size()) {
      throw new CorruptCheckpointException(file, "has an invalid safetensors header length " + length);
    }
    return length;
  }
}
