package io.distillery.model.calib;

import io.distillery.model.CorruptCheckpointException;
import io.distillery.model.safetensors.DType;
import io.distillery.model.safetensors.SafetensorsFile;
import io.distillery.model.safetensors.SafetensorsWriter;
import io.distillery.model.safetensors.TensorCodec;
import io.distillery.model.safetensors.TensorData;
import io.distillery.model.safetensors.TensorSource;
import io.distillery.stage.ArtefactFormats;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.TreeMap;

/**
 * The calibrator's output and the quantizer's and pruner's input: {@link LayerStats} per linear
 * layer, stored as one safetensors file ({@value #FILE_NAME}) with tensors {@code
 * <module>.abs_max}, {@code .sum_abs}, {@code .sum_sq} (F32, [n]), {@code .gram} (F64 stored as I64
 * bits, [n, n], optional), {@code .histogram} (I64, [bins]) and metadata {@code <module>.tokens},
 * {@code <module>.hist_max}, plus free-form run metadata (samples, seqLen, source).
 */
public final class CalibrationStats {

  public static final String FILE_NAME = "calibration.safetensors";
  public static final String FORMAT = ArtefactFormats.CALIBRATION;

  private final Map<String, LayerStats> layers;
  private final Map<String, String> metadata;

  public CalibrationStats(Map<String, LayerStats> layers, Map<String, String> metadata) {
    this.layers = Collections.unmodifiableMap(new LinkedHashMap<>(layers));
    this.metadata = Map.copyOf(metadata);
  }

  public Map<String, LayerStats> layers() {
    return layers;
  }

  public Map<String, String> metadata() {
    return metadata;
  }

  public LayerStats layer(String module) {
    LayerStats s = layers.get(module);
    if (s == null) {
      throw new IllegalArgumentException(
          "no calibration statistics for '" + module + "'; calibrated layers: " + layers.keySet());
    }
    return s;
  }

  public void write(Path file) throws IOException {
    Map<String, TensorSource> tensors = new TreeMap<>();
    Map<String, String> meta = new TreeMap<>(metadata);
    meta.put("format", FORMAT);
    for (LayerStats s : layers.values()) {
      long n = s.inFeatures();
      tensors.put(
          s.module() + ".abs_max", TensorData.ofFloats(DType.F32, new long[] {n}, s.absMax()));
      tensors.put(
          s.module() + ".sum_abs", TensorData.ofFloats(DType.F32, new long[] {n}, s.sumAbs()));
      tensors.put(
          s.module() + ".sum_sq", TensorData.ofFloats(DType.F32, new long[] {n}, s.sumSq()));
      tensors.put(
          s.module() + ".histogram",
          TensorData.ofBytes(
              DType.I64,
              new long[] {s.histogram().length},
              TensorCodec.longsToBytes(s.histogram())));
      if (s.gram() != null) {
        long[] bits = new long[s.gram().length];
        for (int i = 0; i < bits.length; i++) {
          bits[i] = Double.doubleToRawLongBits(s.gram()[i]);
        }
        tensors.put(
            s.module() + ".gram",
            TensorData.ofBytes(DType.I64, new long[] {n, n}, TensorCodec.longsToBytes(bits)));
      }
      meta.put(s.module() + ".tokens", Long.toString(s.tokens()));
      meta.put(s.module() + ".hist_max", Float.toString(s.histMax()));
    }
    SafetensorsWriter.write(file, tensors, meta);
  }

  /**
   * The statistics of a calibration artefact: the file itself, or a directory holding {@value
   * #FILE_NAME}.
   */
  public static CalibrationStats readArtefact(Path artefact) throws IOException {
    return readArtefact(artefact, true);
  }

  /**
   * The statistics of a calibration artefact, with or without the X^T X of each module (a stage
   * that needs only the per-channel vectors leaves the n x n matrices, gigabytes at real sizes, on
   * disk).
   */
  public static CalibrationStats readArtefact(Path artefact, boolean grams) throws IOException {
    return read(Files.isDirectory(artefact) ? artefact.resolve(FILE_NAME) : artefact, grams);
  }

  public static CalibrationStats read(Path file) throws IOException {
    return read(file, true);
  }

  private static CalibrationStats read(Path file, boolean grams) throws IOException {
    try (SafetensorsFile f = SafetensorsFile.open(file)) {
      Map<String, String> meta = new TreeMap<>(f.metadata());
      if (!FORMAT.equals(meta.get("format"))) {
        throw new CorruptCheckpointException(
            file, "is not a calibration artefact (metadata format=" + meta.get("format") + ")");
      }
      Map<String, LayerStats> layers = new LinkedHashMap<>();
      for (String name : f.names()) {
        if (!name.endsWith(".abs_max")) {
          continue;
        }
        String module = name.substring(0, name.length() - ".abs_max".length());
        float[] absMax = f.floats(module + ".abs_max");
        double[] gram = null;
        if (grams && f.contains(module + ".gram")) {
          long[] bits = TensorCodec.bytesToLongs(f.bytes(module + ".gram"));
          gram = new double[bits.length];
          for (int i = 0; i < bits.length; i++) {
            gram[i] = Double.longBitsToDouble(bits[i]);
          }
        }
        layers.put(
            module,
            new LayerStats(
                module,
                absMax.length,
                Long.parseLong(meta.remove(module + ".tokens")),
                absMax,
                f.floats(module + ".sum_abs"),
                f.floats(module + ".sum_sq"),
                gram,
                TensorCodec.bytesToLongs(f.bytes(module + ".histogram")),
                Float.parseFloat(meta.remove(module + ".hist_max"))));
      }
      meta.remove("format");
      return new CalibrationStats(layers, meta);
    } catch (RuntimeException e) {
      throw new CorruptCheckpointException(
          file, "is an inconsistent calibration file: " + e.getMessage(), e);
    }
  }
}
