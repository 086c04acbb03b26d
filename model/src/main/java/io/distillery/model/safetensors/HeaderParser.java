package io.distillery.model.safetensors;

import com.fasterxml.jackson.core.JacksonException;
import com.fasterxml.jackson.core.JsonFactory;
import com.fasterxml.jackson.core.StreamReadConstraints;
import com.fasterxml.jackson.core.StreamReadFeature;
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.json.JsonMapper;
import io.distillery.model.CorruptCheckpointException;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * Validates a safetensors header before anything trusts it. Every check names the file and the
 * tensor; the order of checks guarantees that no size read from the file is used for an allocation
 * or an access before it has been bounded by the file size and the header cap.
 */
final class HeaderParser {

  static final String METADATA_KEY = "__metadata__";
  private static final Set<String> ENTRY_KEYS = Set.of("dtype", "shape", "data_offsets");

  static final ObjectMapper JSON =
      JsonMapper.builder(
              JsonFactory.builder()
                  .enable(StreamReadFeature.STRICT_DUPLICATE_DETECTION)
                  .streamReadConstraints(
                      StreamReadConstraints.builder()
                          .maxStringLength((int) SafetensorsFile.DEFAULT_MAX_HEADER_BYTES)
                          .build())
                  .build())
          .enable(DeserializationFeature.FAIL_ON_TRAILING_TOKENS)
          .build();

  /** The validated header: tensors in data-buffer order. */
  record Header(
      long dataStart, long dataLength, Map<String, String> metadata, List<TensorInfo> tensors) {}

  private HeaderParser() {}

  static Header parse(Path file, MemorySegment mapped, long maxHeaderBytes)
      throws CorruptCheckpointException {
    long fileSize = mapped.byteSize();
    if (fileSize < 8) {
      throw corrupt(file, "file is " + fileSize + " bytes, shorter than the 8-byte header length");
    }
    long headerLength =
        mapped.get(ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN), 0);
    if (headerLength < 0 || headerLength > fileSize - 8) {
      throw corrupt(
          file,
          "header length "
              + Long.toUnsignedString(headerLength)
              + " runs past the end of the file ("
              + fileSize
              + " bytes)");
    }
    if (headerLength > maxHeaderBytes) {
      throw corrupt(
          file,
          "header length " + headerLength + " exceeds the cap of " + maxHeaderBytes + " bytes");
    }
    if (headerLength < 2) {
      throw corrupt(file, "header length " + headerLength + " is too short for a JSON object");
    }
    byte[] headerBytes = mapped.asSlice(8, headerLength).toArray(ValueLayout.JAVA_BYTE);
    String text;
    try {
      text =
          StandardCharsets.UTF_8
              .newDecoder()
              .onMalformedInput(CodingErrorAction.REPORT)
              .onUnmappableCharacter(CodingErrorAction.REPORT)
              .decode(ByteBuffer.wrap(headerBytes))
              .toString();
    } catch (CharacterCodingException e) {
      throw corrupt(file, "header is not valid UTF-8");
    }
    if (text.charAt(0) != '{') {
      throw corrupt(file, "header does not start with '{'");
    }
    JsonNode root;
    try {
      root = JSON.readTree(text);
    } catch (JacksonException e) {
      throw new CorruptCheckpointException(
          file, "header is not valid JSON: " + e.getOriginalMessage(), e);
    }
    if (root == null || !root.isObject()) {
      throw corrupt(file, "header is not a JSON object");
    }
    long dataStart = 8 + headerLength;
    long dataLength = fileSize - dataStart;
    refuseTruncated(file, root, dataStart, dataLength, fileSize);
    Map<String, String> metadata = Map.of();
    List<TensorInfo> tensors = new ArrayList<>(root.size());
    for (Map.Entry<String, JsonNode> field : root.properties()) {
      String name = field.getKey();
      JsonNode value = field.getValue();
      if (name.equals(METADATA_KEY)) {
        metadata = metadata(file, value);
      } else {
        tensors.add(entry(file, name, value, dataLength));
      }
    }
    tensors.sort(Comparator.comparingLong(TensorInfo::begin).thenComparingLong(TensorInfo::end));
    long expectedBegin = 0;
    for (TensorInfo tensor : tensors) {
      if (tensor.begin() < expectedBegin) {
        throw corrupt(
            file,
            "tensor '"
                + tensor.name()
                + "' at ["
                + tensor.begin()
                + ", "
                + tensor.end()
                + ") overlaps the previous tensor, which ends at "
                + expectedBegin);
      }
      if (tensor.begin() > expectedBegin) {
        throw corrupt(
            file,
            "data buffer has a hole: bytes ["
                + expectedBegin
                + ", "
                + tensor.begin()
                + ") before tensor '"
                + tensor.name()
                + "' belong to no tensor");
      }
      expectedBegin = tensor.end();
    }
    if (expectedBegin != dataLength) {
      throw corrupt(
          file,
          "tensors cover "
              + expectedBegin
              + " bytes but the data buffer holds "
              + dataLength
              + " bytes");
    }
    return new Header(dataStart, dataLength, metadata, List.copyOf(tensors));
  }

  /**
   * A file shorter than its header's largest {@code data_offsets} end says (a shard cut short by a
   * failed copy or download) is named as such, with the expected and actual sizes, before the
   * per-tensor checks. Offsets that are not well-formed are left to those checks.
   */
  private static void refuseTruncated(
      Path file, JsonNode root, long dataStart, long dataLength, long fileSize)
      throws CorruptCheckpointException {
    long maxEnd = 0;
    String last = null;
    for (Map.Entry<String, JsonNode> field : root.properties()) {
      JsonNode offsets = field.getValue().get("data_offsets");
      if (field.getKey().equals(METADATA_KEY)
          || offsets == null
          || !offsets.isArray()
          || offsets.size() != 2) {
        continue;
      }
      JsonNode begin = offsets.get(0);
      JsonNode end = offsets.get(1);
      if (begin.isIntegralNumber()
          && begin.canConvertToLong()
          && end.isIntegralNumber()
          && end.canConvertToLong()
          && begin.longValue() >= 0
          && end.longValue() >= begin.longValue()
          && end.longValue() > maxEnd) {
        maxEnd = end.longValue();
        last = field.getKey();
      }
    }
    if (maxEnd > dataLength) {
      throw corrupt(
          file,
          "file is truncated: its header's data_offsets run past the data buffer of "
              + dataLength
              + " bytes (tensor '"
              + last
              + "' ends at byte "
              + maxEnd
              + " of the data), so the file should be "
              + (dataStart + maxEnd)
              + " bytes but it is "
              + fileSize
              + " bytes");
    }
  }

  private static Map<String, String> metadata(Path file, JsonNode value)
      throws CorruptCheckpointException {
    if (value.isNull()) {
      return Map.of();
    }
    if (!value.isObject()) {
      throw corrupt(file, METADATA_KEY + " is not a JSON object");
    }
    Map<String, String> metadata = new LinkedHashMap<>();
    for (Map.Entry<String, JsonNode> entry : value.properties()) {
      if (!entry.getValue().isTextual()) {
        throw corrupt(file, METADATA_KEY + " value for '" + entry.getKey() + "' is not a string");
      }
      metadata.put(entry.getKey(), entry.getValue().textValue());
    }
    return Collections.unmodifiableMap(metadata);
  }

  private static TensorInfo entry(Path file, String name, JsonNode value, long dataLength)
      throws CorruptCheckpointException {
    if (name.isEmpty()) {
      throw corrupt(file, "a tensor has an empty name");
    }
    if (!value.isObject()) {
      throw corrupt(file, "tensor '" + name + "' is not a JSON object");
    }
    for (String key : ENTRY_KEYS) {
      if (!value.has(key)) {
        throw corrupt(file, "tensor '" + name + "' has no " + key);
      }
    }
    if (value.size() != ENTRY_KEYS.size()) {
      for (Map.Entry<String, JsonNode> field : value.properties()) {
        if (!ENTRY_KEYS.contains(field.getKey())) {
          throw corrupt(
              file, "tensor '" + name + "' has an unknown field '" + field.getKey() + "'");
        }
      }
    }
    JsonNode dtypeNode = value.get("dtype");
    DType dtype = dtypeNode.isTextual() ? DType.fromHeaderName(dtypeNode.textValue()) : null;
    if (dtype == null) {
      throw corrupt(
          file,
          "tensor '"
              + name
              + "' has unknown dtype "
              + dtypeNode
              + " (supported: "
              + DType.headerNames()
              + ")");
    }
    JsonNode shapeNode = value.get("shape");
    if (!shapeNode.isArray()) {
      throw corrupt(file, "tensor '" + name + "' shape is not an array");
    }
    long[] shape = new long[shapeNode.size()];
    long elements = 1;
    for (int i = 0; i < shape.length; i++) {
      shape[i] = nonNegativeLong(file, name, "shape", shapeNode.get(i));
      try {
        elements = Math.multiplyExact(elements, shape[i]);
      } catch (ArithmeticException e) {
        throw corrupt(
            file, "tensor '" + name + "' shape " + shapeNode + " overflows the element count");
      }
    }
    long byteLength;
    try {
      byteLength = Math.multiplyExact(elements, dtype.byteSize());
    } catch (ArithmeticException e) {
      throw corrupt(file, "tensor '" + name + "' shape " + shapeNode + " overflows the byte count");
    }
    JsonNode offsets = value.get("data_offsets");
    if (!offsets.isArray() || offsets.size() != 2) {
      throw corrupt(file, "tensor '" + name + "' data_offsets is not an array of two integers");
    }
    long begin = nonNegativeLong(file, name, "data_offsets", offsets.get(0));
    long end = nonNegativeLong(file, name, "data_offsets", offsets.get(1));
    if (end < begin) {
      throw corrupt(
          file, "tensor '" + name + "' data_offsets [" + begin + ", " + end + "] end before begin");
    }
    if (end > dataLength) {
      throw corrupt(
          file,
          "tensor '"
              + name
              + "' data_offsets ["
              + begin
              + ", "
              + end
              + "] run past the data buffer of "
              + dataLength
              + " bytes");
    }
    if (end - begin != byteLength) {
      throw corrupt(
          file,
          "tensor '"
              + name
              + "' holds "
              + (end - begin)
              + " bytes but "
              + dtype
              + " shape "
              + shapeNode
              + " needs "
              + byteLength);
    }
    return new TensorInfo(name, dtype, shape, begin, end);
  }

  private static long nonNegativeLong(Path file, String tensor, String field, JsonNode node)
      throws CorruptCheckpointException {
    if (!node.isIntegralNumber() || !node.canConvertToLong() || node.longValue() < 0) {
      throw corrupt(
          file,
          "tensor '"
              + tensor
              + "' "
              + field
              + " has "
              + node
              + ", not a non-negative 64-bit integer");
    }
    return node.longValue();
  }

  private static CorruptCheckpointException corrupt(Path file, String problem) {
    return new CorruptCheckpointException(file, problem);
  }
}
