package io.distillery.model.safetensors;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.distillery.model.CorruptCheckpointException;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.function.Function;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Corrupts a valid file several hundred ways (seeded) and checks the reader's contract: every
 * variant is either refused with a {@link CorruptCheckpointException} that names the file, or opens
 * and reads consistently. Any other exception (IndexOutOfBounds, NPE, OOM, ...) fails the test.
 */
class SafetensorsFuzzTest {

  private static final int HEADER_FLIPS = 200;
  private static final int TRUNCATIONS = 60;
  private static final int STRUCTURAL = 240;

  @TempDir Path dir;

  private byte[] valid;
  private String validJson;
  private byte[] data;

  @BeforeEach
  void writeValidFile() throws IOException {
    Path file = dir.resolve("valid.safetensors");
    Map<String, TensorData> tensors = new LinkedHashMap<>();
    tensors.put("a.weight", TensorData.ofFloats(new long[] {2, 3}, new float[] {1, 2, 3, 4, 5, 6}));
    tensors.put(
        "b.bias", TensorData.ofFloats(DType.BF16, new long[] {4}, new float[] {-1, 0.5f, 2, 8}));
    tensors.put("c.index", TensorData.ofBytes(DType.I64, new long[] {2}, new byte[16]));
    SafetensorsWriter.write(file, tensors, Map.of("format", "pt"));
    valid = Files.readAllBytes(file);
    int headerLength = (int) ByteBuffer.wrap(valid, 0, 8).order(ByteOrder.LITTLE_ENDIAN).getLong();
    validJson = new String(valid, 8, headerLength, StandardCharsets.UTF_8).strip();
    data = Arrays.copyOfRange(valid, 8 + headerLength, valid.length);
  }

  @Test
  void shouldRefuseOrReadConsistentlyWhenFileIsCorrupted() throws IOException {
    Random random = new Random(20261122L);
    List<Variant> variants = new ArrayList<>();
    for (int i = 0; i < HEADER_FLIPS; i++) {
      variants.add(flipHeaderBytes(random, i));
    }
    for (int i = 0; i < TRUNCATIONS; i++) {
      int length = random.nextInt(valid.length);
      variants.add(new Variant("truncate to " + length, Arrays.copyOf(valid, length)));
    }
    for (long length :
        new long[] {
          Long.MAX_VALUE,
          -1L,
          Long.MIN_VALUE,
          1L << 40,
          valid.length,
          valid.length - 7,
          0,
          1,
          2,
          7,
          headerLength() - 1,
          headerLength() + 1,
          headerLength() + 8,
          200_000_000L
        }) {
      variants.add(
          new Variant("header length " + Long.toUnsignedString(length), withHeaderLength(length)));
    }
    List<Mutation> mutations = mutations();
    for (int i = 0; i < STRUCTURAL; i++) {
      Mutation mutation = mutations.get(i % mutations.size());
      variants.add(json(mutation.description(), mutation.header().apply(random)));
    }
    variants.addAll(otherVariants());

    int refused = 0;
    int readable = 0;
    for (int i = 0; i < variants.size(); i++) {
      Variant variant = variants.get(i);
      Path file = dir.resolve("variant-" + i + ".safetensors");
      Files.write(file, variant.bytes());
      try (SafetensorsFile opened = SafetensorsFile.open(file)) {
        assertReadsConsistently(opened, variant);
        readable++;
      } catch (CorruptCheckpointException e) {
        assertThat(e.getMessage()).as(variant.description()).contains(file.toString());
        assertThat(e.problem()).as(variant.description()).isNotBlank();
        refused++;
      } catch (Throwable e) {
        throw new AssertionError("variant '" + variant.description() + "' threw " + e, e);
      }
    }
    assertThat(variants).hasSizeGreaterThanOrEqualTo(500);
    assertThat(refused).isGreaterThan(variants.size() / 2);
    assertThat(refused + readable).isEqualTo(variants.size());
  }

  private static void assertReadsConsistently(SafetensorsFile opened, Variant variant) {
    long covered = 0;
    for (TensorInfo info : opened.tensors()) {
      assertThat(info.byteSize())
          .as(variant.description())
          .isEqualTo(info.elementCount() * info.dtype().byteSize());
      assertThat(opened.bytes(info.name()))
          .as(variant.description())
          .hasSize((int) info.byteSize());
      assertThat(opened.floats(info.name()))
          .as(variant.description())
          .hasSize((int) info.elementCount());
      covered += info.byteSize();
    }
    long dataLength = opened.tensors().isEmpty() ? 0 : opened.tensors().getLast().end();
    assertThat(covered).as(variant.description()).isEqualTo(dataLength);
    opened.metadata().values().forEach(value -> assertThat(value).isNotNull());
  }

  private Variant flipHeaderBytes(Random random, int index) {
    byte[] bytes = valid.clone();
    int flips = 1 + random.nextInt(4);
    StringBuilder where = new StringBuilder();
    for (int f = 0; f < flips; f++) {
      int position = random.nextInt(8 + (int) headerLength());
      bytes[position] =
          switch (random.nextInt(3)) {
            case 0 -> (byte) (bytes[position] ^ (1 << random.nextInt(8)));
            case 1 -> (byte) random.nextInt(256);
            default -> (byte) JSON_CHARS.charAt(random.nextInt(JSON_CHARS.length()));
          };
      where.append(position).append(' ');
    }
    return new Variant("flip #" + index + " at " + where, bytes);
  }

  /** A header rewrite and the problem the reader must report ({@code null}: may stay valid). */
  private record Mutation(
      String description, Function<Random, String> header, String expectedProblem) {}

  private List<Mutation> mutations() {
    List<Mutation> list = new ArrayList<>();
    list.add(
        new Mutation(
            "offsets shuffled",
            r -> validJson.replace("[0,24]", "[24,48]").replace("[32,48]", "[0,24]"),
            "holds 24 bytes but I64 shape [2] needs 16"));
    list.add(new Mutation("offsets permuted", this::permuteOffsets, null));
    list.add(
        new Mutation(
            "offset begin shifted",
            r -> validJson.replaceFirst("\\[0,", "[" + (1 + r.nextInt(20)) + ","),
            "needs 24"));
    list.add(
        new Mutation(
            "offset end shifted",
            r -> validJson.replaceFirst(",48\\]", "," + (49 + r.nextInt(200)) + "]"),
            "run past the data buffer"));
    list.add(
        new Mutation(
            "offset huge",
            r -> validJson.replaceFirst("\\[0,", "[" + Long.MAX_VALUE + ","),
            "end before begin"));
    list.add(
        new Mutation(
            "offset beyond long",
            r -> validJson.replaceFirst("\\[0,", "[123456789012345678901234567890,"),
            "not a non-negative 64-bit"));
    list.add(
        new Mutation(
            "offset negative", r -> validJson.replaceFirst("\\[0,", "[-8,"), "not a non-negative"));
    list.add(
        new Mutation(
            "offset fractional",
            r -> validJson.replaceFirst("\\[0,", "[0.5,"),
            "not a non-negative"));
    list.add(
        new Mutation(
            "offset string",
            r -> validJson.replaceFirst("\\[0,", "[\"0\","),
            "not a non-negative"));
    list.add(
        new Mutation(
            "offsets three", r -> validJson.replaceFirst("\\[0,", "[0,0,"), "not an array of two"));
    list.add(
        new Mutation("offsets overlap", r -> validJson.replace("[24,32]", "[20,28]"), "overlaps"));
    list.add(
        new Mutation(
            "offsets leave a hole",
            r -> validJson.replace("[24,32]", "[28,36]").replace("[32,48]", "[36,52]"),
            "run past the data buffer"));
    list.add(
        new Mutation(
            "dtype unknown",
            r -> validJson.replaceFirst("\"F32\"", pick(r, BAD_DTYPES)),
            "unknown dtype"));
    list.add(
        new Mutation(
            "dtype swapped",
            r -> validJson.replaceFirst("\"BF16\"", "\"I64\""),
            "holds 8 bytes but I64 shape [4] needs 32"));
    list.add(
        new Mutation(
            "shape grown",
            r -> validJson.replaceFirst("\\[2,3\\]", "[2," + (4 + r.nextInt(5)) + "]"),
            "holds 24 bytes but F32"));
    list.add(
        new Mutation(
            "shape negative",
            r -> validJson.replaceFirst("\\[2,3\\]", "[-2,-3]"),
            "not a non-negative"));
    list.add(
        new Mutation(
            "shape overflow",
            r -> validJson.replaceFirst("\\[2,3\\]", "[4294967296,4294967296]"),
            "overflows the element count"));
    list.add(
        new Mutation(
            "shape bytes overflow",
            r -> validJson.replaceFirst("\\[2,3\\]", "[3074457345618258603]"),
            "overflows the byte count"));
    list.add(
        new Mutation(
            "shape not array", r -> validJson.replaceFirst("\\[2,3\\]", "6"), "not an array"));
    list.add(
        new Mutation(
            "shape nested",
            r -> validJson.replaceFirst("\\[2,3\\]", "[[2],3]"),
            "not a non-negative"));
    list.add(
        new Mutation(
            "shape fractional",
            r -> validJson.replaceFirst("\\[2,3\\]", "[2.0,3]"),
            "not a non-negative"));
    list.add(
        new Mutation("shape scalar", r -> validJson.replaceFirst("\\[2,3\\]", "[]"), "needs 4"));
    list.add(
        new Mutation(
            "missing dtype",
            r -> validJson.replaceFirst("\"dtype\":\"F32\",", ""),
            "has no dtype"));
    list.add(
        new Mutation(
            "missing shape",
            r -> validJson.replaceFirst("\"shape\":\\[2,3\\],", ""),
            "has no shape"));
    list.add(
        new Mutation(
            "missing offsets",
            r -> validJson.replaceFirst(",\"data_offsets\":\\[0,24\\]", ""),
            "has no data_offsets"));
    list.add(
        new Mutation(
            "extra field",
            r -> validJson.replaceFirst("\"dtype\":\"F32\"", "\"dtype\":\"F32\",\"x\":1"),
            "unknown field 'x'"));
    list.add(
        new Mutation(
            "entry not object",
            r -> validJson.replaceFirst("\\{\"dtype\":\"F32\"[^}]*\\}", "[1]"),
            "is not a JSON object"));
    list.add(
        new Mutation("metadata number", r -> validJson.replace("\"pt\"", "42"), "is not a string"));
    list.add(
        new Mutation(
            "metadata array",
            r -> validJson.replace("{\"format\":\"pt\"}", "[\"pt\"]"),
            "__metadata__ is not a JSON object"));
    list.add(
        new Mutation(
            "duplicate key",
            r -> validJson.replaceFirst("\\{", "{\"a.weight\":{},"),
            "Duplicate field"));
    list.add(new Mutation("root not object", r -> pick(r, NON_OBJECTS), "header"));
    list.add(
        new Mutation(
            "root array of object", r -> "[" + validJson + "]", "does not start with '{'"));
    list.add(new Mutation("trailing garbage", r -> validJson + " {}", "not valid JSON"));
    list.add(
        new Mutation("empty name", r -> validJson.replace("\"c.index\"", "\"\""), "empty name"));
    list.add(
        new Mutation(
            "deep nesting",
            r -> "{\"x\":" + "[".repeat(5000) + "]".repeat(5000) + "}",
            "not valid JSON"));
    list.add(
        new Mutation(
            "no tensors, data left over",
            r -> "{}",
            "tensors cover 0 bytes but the data buffer holds 48"));
    return list;
  }

  private static final String JSON_CHARS = "{}[]\":,0123456789-e. ";
  private static final String[] BAD_DTYPES = {
    "\"F64\"", "\"f32\"", "\"\"", "3", "null", "\"BOOL\"", "[\"F32\"]"
  };
  private static final String[] NON_OBJECTS = {"[]", "null", "1", "\"s\"", "true", "[{}]"};

  private static String pick(Random random, String[] options) {
    return options[random.nextInt(options.length)];
  }

  @Test
  void shouldNameProblemWhenHeaderIsMalformed() throws IOException {
    Random random = new Random(7);
    int checked = 0;
    for (Mutation mutation : mutations()) {
      if (mutation.expectedProblem() == null) {
        continue;
      }
      Path file = dir.resolve("mutation-" + checked++ + ".safetensors");
      Files.write(file, json(mutation.description(), mutation.header().apply(random)).bytes());
      assertThatThrownBy(() -> SafetensorsFile.open(file).close())
          .as(mutation.description())
          .isInstanceOf(CorruptCheckpointException.class)
          .hasMessageStartingWith(file.toString())
          .hasMessageContaining(mutation.expectedProblem());
    }
    assertThat(checked).isGreaterThan(30);
  }

  @Test
  void shouldRefuseWhenBytesAroundHeaderAreWrong() throws IOException {
    for (Variant variant : otherVariants()) {
      Path file = dir.resolve("other.safetensors");
      Files.write(file, variant.bytes());
      assertThatThrownBy(() -> SafetensorsFile.open(file).close())
          .as(variant.description())
          .isInstanceOf(CorruptCheckpointException.class)
          .hasMessageContaining(
              variant.description().substring(variant.description().indexOf(':') + 2));
    }
  }

  /** Variants outside the JSON; the description ends with the expected problem after ": ". */
  private List<Variant> otherVariants() {
    byte[] badUtf8 = headerPrefix(validJson);
    badUtf8[8 + validJson.indexOf("\"pt\"") + 1] = (byte) 0xFF;
    return List.of(
        new Variant(
            "data appended: tensors cover 48 bytes but the data buffer holds 51",
            concat(valid, new byte[] {1, 2, 3})),
        new Variant(
            "data shortened: run past the data buffer of 44 bytes",
            concat(headerPrefix(validJson), Arrays.copyOf(data, data.length - 4))),
        new Variant(
            "hole between tensors: data buffer has a hole: bytes [24, 28)",
            concat(
                headerPrefix(validJson.replace("[24,32]", "[28,36]").replace("[32,48]", "[36,52]")),
                concat(data, new byte[4]))),
        new Variant("empty file: shorter than the 8-byte header length", new byte[0]),
        new Variant("invalid UTF-8: header is not valid UTF-8", concat(badUtf8, data)),
        new Variant("header length 2^64-1: runs past the end of the file", withHeaderLength(-1)),
        new Variant(
            "header length 2^40: runs past the end of the file", withHeaderLength(1L << 40)),
        new Variant("header length 0: too short", withHeaderLength(0)));
  }

  private String permuteOffsets(Random random) {
    List<String> offsets = new ArrayList<>(List.of("[0,24]", "[24,32]", "[32,48]"));
    Collections.shuffle(offsets, random);
    return validJson
        .replaceAll("\\[0,24\\]|\\[24,32\\]|\\[32,48\\]", "@")
        .replaceFirst("@", offsets.get(0))
        .replaceFirst("@", offsets.get(1))
        .replaceFirst("@", offsets.get(2));
  }

  private Variant json(String description, String header) {
    return new Variant(description, concat(headerPrefix(header), data));
  }

  private static byte[] headerPrefix(String json) {
    byte[] header = json.getBytes(StandardCharsets.UTF_8);
    int padded = (header.length + 7) & ~7;
    byte[] out = new byte[8 + padded];
    ByteBuffer.wrap(out).order(ByteOrder.LITTLE_ENDIAN).putLong(padded);
    System.arraycopy(header, 0, out, 8, header.length);
    Arrays.fill(out, 8 + header.length, out.length, (byte) ' ');
    return out;
  }

  private long headerLength() {
    return ByteBuffer.wrap(valid, 0, 8).order(ByteOrder.LITTLE_ENDIAN).getLong();
  }

  private byte[] withHeaderLength(long length) {
    byte[] bytes = valid.clone();
    ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN).putLong(length);
    return bytes;
  }

  private static byte[] concat(byte[] a, byte[] b) {
    byte[] out = Arrays.copyOf(a, a.length + b.length);
    System.arraycopy(b, 0, out, a.length, b.length);
    return out;
  }

  private record Variant(String description, byte[] bytes) {}
}
