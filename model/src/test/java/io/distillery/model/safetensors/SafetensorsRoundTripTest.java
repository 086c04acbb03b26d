package io.distillery.model.safetensors;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.distillery.model.CorruptCheckpointException;
import java.io.IOException;
import java.io.RandomAccessFile;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class SafetensorsRoundTripTest {

  @TempDir Path dir;

  @Test
  void shouldReadBitIdenticalBytesWhenEveryDtypeRoundTrips() throws IOException {
    Random random = new Random(1);
    Map<String, TensorData> tensors = new LinkedHashMap<>();
    long[][] shapes = {{3, 5}, {7}, {2, 1, 3}, {}, {0, 4}, {1}, {4, 2}, {2, 3}};
    DType[] types = DType.values();
    for (int i = 0; i < types.length; i++) {
      long[] shape = shapes[i];
      long elements = 1;
      for (long dim : shape) {
        elements *= dim;
      }
      byte[] bytes = new byte[(int) elements * types[i].byteSize()];
      random.nextBytes(bytes);
      tensors.put("t." + types[i].name().toLowerCase(), TensorData.ofBytes(types[i], shape, bytes));
    }
    Map<String, String> metadata = Map.of("format", "pt", "note", "ünïcode ✓");
    Path file = dir.resolve("all.safetensors");

    SafetensorsWriter.write(file, tensors, metadata);

    try (SafetensorsFile read = SafetensorsFile.open(file)) {
      assertThat(read.metadata()).isEqualTo(metadata);
      assertThat(read.names()).containsExactlyInAnyOrderElementsOf(tensors.keySet());
      for (Map.Entry<String, TensorData> entry : tensors.entrySet()) {
        TensorInfo info = read.info(entry.getKey());
        assertThat(info.dtype()).isEqualTo(entry.getValue().dtype());
        assertThat(info.shape()).containsExactly(entry.getValue().shape());
        assertThat(read.bytes(entry.getKey()))
            .containsExactly(entry.getValue().data().toArray(ValueLayout.JAVA_BYTE));
      }
      assertThat(read.tensors())
          .extracting(TensorInfo::name)
          .as("data buffer in sorted name order")
          .isSorted();
    }
    long headerLength = readHeaderLength(file);
    assertThat(headerLength % 8).isZero();
    assertThat((8 + headerLength) % 8).isZero();
    byte[] header = new byte[(int) headerLength];
    System.arraycopy(Files.readAllBytes(file), 8, header, 0, header.length);
    assertThat(new String(header, StandardCharsets.UTF_8)).startsWith("{\"__metadata__\":");
  }

  @Test
  void shouldWidenBf16WhenReadingFloats() throws IOException {
    short[] bits = {0x3F80, (short) 0xC000, 0x4049, 0x7F80, 0x0001, (short) 0x8000};
    float[] expected = {
      1.0f, -2.0f, 3.140625f, Float.POSITIVE_INFINITY, (float) Math.pow(2, -133), -0.0f
    };
    assertThat(writeAndReadFloats(DType.BF16, bits)).containsExactly(expected);
  }

  @Test
  void shouldKeepF8E4M3DtypeAndDecodeCodesExactlyWhenRoundTripping() throws IOException {
    // 1.0 = 0.0111.000, 448 = 0.1111.110, -448, smallest subnormal 2^-9 = 0.0000.001, 1.125 =
    // 0.0111.001,
    // -0.5 = 1.0110.000, NaN = 0.1111.111
    byte[] codes = {0x38, 0x7E, (byte) 0xFE, 0x01, 0x39, (byte) 0xB0, 0x7F, 0x00};
    Path file = dir.resolve("fp8.safetensors");
    SafetensorsWriter.write(
        file, Map.of("w", TensorData.ofBytes(DType.F8_E4M3, new long[] {2, 4}, codes)), Map.of());
    try (SafetensorsFile read = SafetensorsFile.open(file)) {
      assertThat(read.info("w").dtype()).isEqualTo(DType.F8_E4M3);
      assertThat(read.bytes("w")).containsExactly(codes);
      assertThat(read.floats("w"))
          .containsExactly(1f, 448f, -448f, 0x1p-9f, 1.125f, -0.5f, Float.NaN, 0f);
    }
    byte[] all = Files.readAllBytes(file);
    String header = new String(all, 8, (int) readHeaderLength(file), StandardCharsets.UTF_8);
    assertThat(header).contains("\"dtype\":\"F8_E4M3\"");
    assertThat(DType.F8_E4M3.isFloatingPoint())
        .as("F8 weights need their scale; never widened as they are")
        .isFalse();
    assertThat(DType.F8_E4M3.torchName()).isEqualTo("float8_e4m3fn");
  }

  @Test
  void shouldWidenF16WhenReadingFloats() throws IOException {
    short[] bits = {0x3C00, (short) 0xC000, 0x3555, 0x7BFF, 0x0001, (short) 0xFC00};
    float[] expected = {
      1.0f, -2.0f, 0.333251953125f, 65504f, (float) Math.pow(2, -24), Float.NEGATIVE_INFINITY
    };
    assertThat(writeAndReadFloats(DType.F16, bits)).containsExactly(expected);
  }

  @Test
  void shouldRoundToNearestEvenWhenNarrowingToBf16() {
    // 1 + 2^-8 lies halfway between 1.0 (0x3F80, even) and 1 + 2^-7 (0x3F81): rounds down to even;
    // 1 + 3 * 2^-8 lies halfway between 0x3F81 and 0x3F82 (even): rounds up.
    assertThat(TensorCodec.floatToBf16(1f + 0x1p-8f)).isEqualTo((short) 0x3F80);
    assertThat(TensorCodec.floatToBf16(1f + 3 * 0x1p-8f)).isEqualTo((short) 0x3F82);
    assertThat(TensorCodec.floatToBf16(-2f)).isEqualTo((short) 0xC000);
    assertThat(Float.isNaN(TensorCodec.bf16ToFloat(TensorCodec.floatToBf16(Float.NaN)))).isTrue();
  }

  @Test
  void shouldReturnSameFloatsWhenF32RoundTrips() throws IOException {
    float[] values = {0f, -1.5f, Float.MIN_VALUE, Float.MAX_VALUE, 1e-20f, 3.25f};
    Path file = dir.resolve("f32.safetensors");
    SafetensorsWriter.write(
        file, Map.of("w", TensorData.ofFloats(new long[] {2, 3}, values)), Map.of());
    try (SafetensorsFile read = SafetensorsFile.open(file)) {
      assertThat(read.floats("w")).containsExactly(values);
      assertThat(read.metadata()).isEmpty();
    }
  }

  @Test
  void shouldConvertIntegersWhenReadingFloats() throws IOException {
    Path file = dir.resolve("ints.safetensors");
    ByteBuffer i32 =
        ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN).putInt(-7).putInt(1 << 20);
    SafetensorsWriter.write(
        file,
        Map.of(
            "i8", TensorData.ofBytes(DType.I8, new long[] {2}, new byte[] {-1, 127}),
            "u8", TensorData.ofBytes(DType.U8, new long[] {2}, new byte[] {-1, 127}),
            "i32", TensorData.ofBytes(DType.I32, new long[] {2}, i32.array())),
        Map.of());
    try (SafetensorsFile read = SafetensorsFile.open(file)) {
      assertThat(read.floats("i8")).containsExactly(-1f, 127f);
      assertThat(read.floats("u8")).containsExactly(255f, 127f);
      assertThat(read.floats("i32")).containsExactly(-7f, 1 << 20);
    }
  }

  @Test
  void shouldNarrowHalfTypesWhenWritingFloats() throws IOException {
    float[] values = {1f, -2f, 0.1f, 65504f};
    Path file = dir.resolve("half.safetensors");
    SafetensorsWriter.write(
        file,
        Map.of(
            "bf16", TensorData.ofFloats(DType.BF16, new long[] {4}, values),
            "f16", TensorData.ofFloats(DType.F16, new long[] {4}, values)),
        Map.of());
    try (SafetensorsFile read = SafetensorsFile.open(file)) {
      assertThat(read.floats("f16"))
          .containsExactly(1f, -2f, Float.float16ToFloat(Float.floatToFloat16(0.1f)), 65504f);
      // bf16 keeps 8 significant bits: 0.1 -> 0.10009765625, 65504 -> 65536
      assertThat(read.floats("bf16")).containsExactly(1f, -2f, 0.10009765625f, 65536f);
    }
  }

  @Test
  void shouldRefuseWriteWhenBytesDoNotMatchShape() {
    assertThatThrownBy(() -> TensorData.ofBytes(DType.F32, new long[] {2}, new byte[7]))
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessageContaining("needs 8 bytes");
    TensorSource lying =
        TensorSource.lazy(
            DType.F32, new long[] {2}, () -> java.lang.foreign.MemorySegment.ofArray(new byte[4]));
    assertThatThrownBy(
            () ->
                SafetensorsWriter.write(dir.resolve("x.safetensors"), Map.of("x", lying), Map.of()))
        .isInstanceOf(IllegalArgumentException.class);
    assertThat(dir.resolve("x.safetensors")).doesNotExist();
    assertThat(dir.toFile().list()).as("no partial file left behind").isEmpty();
  }

  @Test
  void shouldReadTensorBeyond2GiBWhenFileIsLarge() throws IOException {
    long elements = 3L << 30;
    String json =
        "{\"big\":{\"dtype\":\"U8\",\"shape\":["
            + elements
            + "],\"data_offsets\":[0,"
            + elements
            + "]}}";
    byte[] header =
        (json + " ".repeat((8 - json.length() % 8) % 8)).getBytes(StandardCharsets.UTF_8);
    Path file = dir.resolve("big.safetensors");
    try (RandomAccessFile raf = new RandomAccessFile(file.toFile(), "rw")) {
      raf.write(
          ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN).putLong(header.length).array());
      raf.write(header);
      raf.setLength(8 + header.length + elements);
      raf.seek(8 + header.length + elements - 1);
      raf.write(42);
    }
    try (SafetensorsFile read = SafetensorsFile.open(file)) {
      assertThat(read.info("big").byteSize()).isEqualTo(elements);
      assertThat(read.segment("big").get(ValueLayout.JAVA_BYTE, elements - 1)).isEqualTo((byte) 42);
      assertThatThrownBy(() -> read.floats("big")).isInstanceOf(IllegalArgumentException.class);
    }
  }

  @Test
  void shouldRefuseHeaderWhenLongerThanCap() throws IOException {
    Path file = dir.resolve("meta.safetensors");
    SafetensorsWriter.write(
        file,
        Map.of("w", TensorData.ofFloats(new long[] {1}, new float[] {1})),
        Map.of("long", "x".repeat(200)));
    assertThatThrownBy(() -> SafetensorsFile.open(file, 128))
        .isInstanceOf(CorruptCheckpointException.class)
        .hasMessageContaining(file.toString())
        .hasMessageContaining("cap");
  }

  @Test
  void shouldFailReadsWhenFileIsClosed() throws IOException {
    Path file = dir.resolve("closed.safetensors");
    SafetensorsWriter.write(
        file, Map.of("w", TensorData.ofFloats(new long[] {1}, new float[] {1})), Map.of());
    SafetensorsFile read = SafetensorsFile.open(file);
    var segment = read.segment("w");
    read.close();
    read.close();
    assertThatThrownBy(() -> segment.get(ValueLayout.JAVA_BYTE, 0))
        .isInstanceOf(IllegalStateException.class);
    assertThat(List.of(read.names().toArray())).containsExactly("w");
  }

  private float[] writeAndReadFloats(DType dtype, short[] bits) throws IOException {
    ByteBuffer buffer = ByteBuffer.allocate(bits.length * 2).order(ByteOrder.LITTLE_ENDIAN);
    for (short value : bits) {
      buffer.putShort(value);
    }
    Path file = dir.resolve(dtype + ".safetensors");
    SafetensorsWriter.write(
        file,
        Map.of("h", TensorData.ofBytes(dtype, new long[] {bits.length}, buffer.array())),
        Map.of());
    try (SafetensorsFile read = SafetensorsFile.open(file)) {
      return read.floats("h");
    }
  }

  private static long readHeaderLength(Path file) throws IOException {
    byte[] prefix = new byte[8];
    System.arraycopy(Files.readAllBytes(file), 0, prefix, 0, 8);
    return ByteBuffer.wrap(prefix).order(ByteOrder.LITTLE_ENDIAN).getLong();
  }
}
