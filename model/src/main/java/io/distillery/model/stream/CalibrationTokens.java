package io.distillery.model.stream;

import io.distillery.model.CorruptCheckpointException;
import io.distillery.model.safetensors.DType;
import io.distillery.model.safetensors.SafetensorsFile;
import io.distillery.model.safetensors.SafetensorsWriter;
import io.distillery.model.safetensors.TensorCodec;
import io.distillery.model.safetensors.TensorData;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

/**
 * The token ids of the calibration samples, which a streamed stage runs through the model one layer
 * at a time (the statistics of a sequential calibration cannot be computed ahead: layer i+1's
 * inputs are the outputs of the already compressed layer i). Stored beside the calibrator's
 * statistics as {@value #FILE_NAME}: {@code input_ids} I32 (every sample's ids end to end) and
 * {@code lengths} I32 (one entry a sample).
 */
public record CalibrationTokens(List<int[]> samples) {

  public static final String FILE_NAME = "calibration-tokens.safetensors";

  public CalibrationTokens {
    samples = List.copyOf(samples);
    if (samples.isEmpty()) {
      throw new IllegalArgumentException("no calibration samples");
    }
    for (int[] s : samples) {
      if (s.length == 0) {
        throw new IllegalArgumentException("a calibration sample has no tokens");
      }
    }
  }

  /** Every sample's length added up. */
  public long tokenCount() {
    return samples.stream().mapToLong(s -> s.length).sum();
  }

  public int longest() {
    return samples.stream().mapToInt(s -> s.length).max().orElseThrow();
  }

  /**
   * Samples grouped into batches of equal length (no padding ever reaches a statistic), at most
   * {@code maxBatchTokens} tokens and {@code maxRows} rows each, longest first: the calibrator's
   * grouping, so that a streamed pass sees the very batches a whole-model pass saw.
   */
  public List<int[][]> batches(int maxBatchTokens, int maxRows) {
    TreeMap<Integer, List<int[]>> byLength = new TreeMap<>(Comparator.reverseOrder());
    for (int[] s : samples) {
      byLength.computeIfAbsent(s.length, k -> new ArrayList<>()).add(s);
    }
    List<int[][]> batches = new ArrayList<>();
    for (var entry : byLength.entrySet()) {
      int rows = Math.max(1, Math.min(maxRows, maxBatchTokens / entry.getKey()));
      List<int[]> group = entry.getValue();
      for (int from = 0; from < group.size(); from += rows) {
        batches.add(group.subList(from, Math.min(group.size(), from + rows)).toArray(int[][]::new));
      }
    }
    return batches;
  }

  public void write(Path file) throws IOException {
    int total = Math.toIntExact(tokenCount());
    int[] ids = new int[total];
    int[] lengths = new int[samples.size()];
    int at = 0;
    for (int i = 0; i < samples.size(); i++) {
      int[] s = samples.get(i);
      System.arraycopy(s, 0, ids, at, s.length);
      at += s.length;
      lengths[i] = s.length;
    }
    Map<String, TensorData> tensors = new LinkedHashMap<>();
    tensors.put(
        "input_ids",
        TensorData.ofBytes(DType.I32, new long[] {total}, TensorCodec.intsToBytes(ids)));
    tensors.put(
        "lengths",
        TensorData.ofBytes(
            DType.I32, new long[] {lengths.length}, TensorCodec.intsToBytes(lengths)));
    SafetensorsWriter.write(file, tensors, Map.of("format", "calibration-tokens"));
  }

  /**
   * The tokens of a calibration artefact: a directory holding {@value #FILE_NAME}, or that file
   * itself; null when the artefact carries none (a calibrator of an older version wrote statistics
   * only).
   */
  public static CalibrationTokens readArtefact(Path artefact) throws IOException {
    Path file = Files.isDirectory(artefact) ? artefact.resolve(FILE_NAME) : artefact;
    return Files.isRegularFile(file) && file.getFileName().toString().equals(FILE_NAME)
        ? read(file)
        : null;
  }

  public static CalibrationTokens read(Path file) throws IOException {
    try (SafetensorsFile f = SafetensorsFile.open(file)) {
      if (!f.contains("input_ids") || !f.contains("lengths")) {
        throw new CorruptCheckpointException(file, "has no input_ids and lengths tensors");
      }
      int[] ids = TensorCodec.bytesToInts(f.bytes("input_ids"));
      int[] lengths = TensorCodec.bytesToInts(f.bytes("lengths"));
      List<int[]> samples = new ArrayList<>(lengths.length);
      int at = 0;
      for (int length : lengths) {
        if (length <= 0 || at + length > ids.length) {
          throw new CorruptCheckpointException(
              file, "lengths do not add up to the " + ids.length + " input_ids");
        }
        int[] s = new int[length];
        System.arraycopy(ids, at, s, 0, length);
        samples.add(s);
        at += length;
      }
      if (at != ids.length || samples.isEmpty()) {
        throw new CorruptCheckpointException(
            file, "lengths do not add up to the " + ids.length + " input_ids");
      }
      return new CalibrationTokens(samples);
    }
  }
}
