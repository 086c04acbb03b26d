package io.distillery.distiller.student;

import static io.distillery.model.llama.WeightSlices.expand;
import static io.distillery.model.llama.WeightSlices.first;
import static io.distillery.model.llama.WeightSlices.pick;
import static io.distillery.model.llama.WeightSlices.slice;

import io.distillery.distiller.DistillerParams.Student;
import io.distillery.model.CorruptCheckpointException;
import io.distillery.model.config.LlamaConfig;
import io.distillery.model.config.LlamaTensorNames;
import io.distillery.model.llama.LlamaModel;
import io.distillery.model.safetensors.Checkpoint;
import io.distillery.model.safetensors.DType;
import io.distillery.model.safetensors.SafetensorsWriter;
import io.distillery.model.safetensors.TensorData;
import io.distillery.model.safetensors.TensorInfo;
import io.distillery.model.safetensors.TensorSource;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * Initialises a student from the teacher's weights (Minitron-style): layer selection takes {@code
 * student.layers} evenly spaced teacher layers (first and last always kept); width slicing keeps
 * {@code kvHeads} kv groups, and within each {@code heads/kvHeads} query heads of that group,
 * {@code hidden} residual dimensions and {@code intermediate} MLP channels: the highest-scoring
 * ones by {@link ChannelImportance} when scores are given, else the first ones. The teacher's head
 * dimension is kept (slicing inside a head would break RoPE's rotate-half pairing), so the
 * student's attention width is {@code heads * teacher.headDim}. (Implemented locally: the distiller
 * cannot depend on the pruner module.)
 */
public final class StudentInit {

  private StudentInit() {}

  /** Evenly spaced layer indices: round(i * (n-1) / (k-1)); k == 1 keeps layer 0. */
  public static int[] selectLayers(int teacherLayers, int studentLayers) {
    int[] out = new int[studentLayers];
    for (int i = 0; i < studentLayers; i++) {
      out[i] =
          studentLayers == 1
              ? 0
              : (int) Math.round(i * (teacherLayers - 1) / (double) (studentLayers - 1));
    }
    return out;
  }

  /** The student's config: the teacher's with the student's shape. */
  public static LlamaConfig studentConfig(LlamaConfig c, Student s) {
    s.requireFits(c);
    return new LlamaConfig(
        c.architecture(),
        c.vocabSize(),
        s.hidden(),
        s.intermediate(),
        s.layers(),
        s.heads(),
        s.kvHeads(),
        c.headDim(),
        c.maxPositionEmbeddings(),
        c.rmsNormEps(),
        c.ropeTheta(),
        c.ropeScaling(),
        c.tieWordEmbeddings(),
        c.attentionBias(),
        c.slidingWindow(),
        c.bosTokenId(),
        c.eosTokenIds(),
        c.padTokenId(),
        "float32");
  }

  /**
   * Slices the teacher keeping the first units and writes {@code config.json} and F32 {@code
   * model.safetensors}.
   */
  public static LlamaConfig write(LlamaModel teacher, Student s, Path out) throws IOException {
    return write(teacher, s, out, null);
  }

  /**
   * Slices the teacher and writes {@code config.json} and F32 {@code model.safetensors} into {@code
   * out}.
   *
   * @param importance unit scores: the highest-scoring hidden dimensions, kv groups (by the sum of
   *     their heads), heads within a group and MLP channels are kept; null keeps the first ones
   */
  public static LlamaConfig write(
      LlamaModel teacher, Student s, Path out, ChannelImportance importance) throws IOException {
    return write(
        teacher.config(),
        name -> teacher.parameters().get(name).toFloatArray(),
        s,
        out,
        importance);
  }

  /**
   * As {@link #write(LlamaModel, Student, Path, ChannelImportance)}, reading the teacher's tensors
   * one at a time from its memory-mapped checkpoint (each widened to F32 only while it is sliced),
   * so the whole teacher is never materialised.
   *
   * @throws CorruptCheckpointException if a tensor is missing, not a float tensor, or not the shape
   *     config.json implies
   */
  public static LlamaConfig write(
      Checkpoint teacher, LlamaConfig config, Student s, Path out, ChannelImportance importance)
      throws IOException {
    Map<String, long[]> shapes = LlamaTensorNames.shapes(config);
    return write(
        config,
        name -> {
          if (!teacher.contains(name)) {
            throw new CorruptCheckpointException(
                teacher.directory(), "tensor '" + name + "' is missing");
          }
          TensorInfo info = teacher.info(name);
          if (!info.dtype().isFloatingPoint() || !Arrays.equals(info.shape(), shapes.get(name))) {
            throw new CorruptCheckpointException(
                teacher.directory(),
                "tensor '"
                    + name
                    + "' is "
                    + info.dtype()
                    + " "
                    + Arrays.toString(info.shape())
                    + "; a student is sliced from a float "
                    + Arrays.toString(shapes.get(name)));
          }
          return teacher.floats(name);
        },
        s,
        out,
        importance);
  }

  /** A teacher tensor by name, widened to F32. */
  @FunctionalInterface
  private interface Tensors {
    float[] get(String name) throws IOException;
  }

  private static LlamaConfig write(
      LlamaConfig c, Tensors teacher, Student s, Path out, ChannelImportance importance)
      throws IOException {
    LlamaConfig sc = studentConfig(c, s);
    int[] layers = selectLayers(c.numHiddenLayers(), s.layers());
    int hd = c.headDim();
    int[] hid =
        importance == null
            ? first(s.hidden())
            : ChannelImportance.top(importance.hidden(), s.hidden());
    int th = c.hiddenSize();
    int[][] qRowsByLayer = new int[s.layers()][];
    int[][] kvRowsByLayer = new int[s.layers()][];
    int[][] channelsByLayer = new int[s.layers()][];
    for (int nl = 0; nl < s.layers(); nl++) {
      int[][] heads = heads(c, s, importance == null ? null : importance.heads()[layers[nl]]);
      qRowsByLayer[nl] = expand(heads[0], hd);
      kvRowsByLayer[nl] = expand(heads[1], hd);
      channelsByLayer[nl] =
          importance == null
              ? first(s.intermediate())
              : ChannelImportance.top(importance.channels()[layers[nl]], s.intermediate());
    }
    Map<String, TensorSource> tensors = new LinkedHashMap<>();
    for (Map.Entry<String, long[]> e : LlamaTensorNames.shapes(sc).entrySet()) {
      String name = e.getKey();
      float[] v;
      if (!name.startsWith("model.layers.")) {
        float[] old = teacher.get(name);
        v =
            name.endsWith("norm.weight")
                ? pick(old, hid)
                : slice(old, c.vocabSize(), th, first(c.vocabSize()), hid);
      } else {
        int nl = Integer.parseInt(name.split("\\.")[2]);
        int[] qRows = qRowsByLayer[nl];
        int[] kvRows = kvRowsByLayer[nl];
        int[] ch = channelsByLayer[nl];
        String suffix = name.substring(LlamaTensorNames.layerPrefix(nl).length());
        float[] old = teacher.get(LlamaTensorNames.layerPrefix(layers[nl]) + suffix);
        v =
            switch (suffix) {
              case "self_attn.q_proj.weight" -> slice(old, c.attentionWidth(), th, qRows, hid);
              case "self_attn.q_proj.bias" -> pick(old, qRows);
              case "self_attn.k_proj.weight", "self_attn.v_proj.weight" ->
                  slice(old, c.keyValueWidth(), th, kvRows, hid);
              case "self_attn.k_proj.bias", "self_attn.v_proj.bias" -> pick(old, kvRows);
              case "self_attn.o_proj.weight" -> slice(old, th, c.attentionWidth(), hid, qRows);
              case "self_attn.o_proj.bias" -> pick(old, hid);
              case "mlp.gate_proj.weight", "mlp.up_proj.weight" ->
                  slice(old, c.intermediateSize(), th, ch, hid);
              case "mlp.down_proj.weight" -> slice(old, th, c.intermediateSize(), hid, ch);
              default -> pick(old, hid); // layer norms
            };
      }
      long n = 1;
      for (long d : e.getValue()) {
        n *= d;
      }
      if (v.length != n) {
        throw new IllegalStateException(name + ": sliced " + v.length + " values, expected " + n);
      }
      tensors.put(name, TensorData.ofFloats(DType.F32, e.getValue(), v));
    }
    Files.createDirectories(out);
    SafetensorsWriter.write(out.resolve(Checkpoint.SINGLE_FILE), tensors, Map.of("format", "pt"));
    sc.write(out);
    return sc;
  }

  /**
   * The kept query heads and kv groups (teacher indices, ascending): the best {@code kvHeads}
   * groups by the summed score of their query heads, and in each the best {@code heads/kvHeads}
   * query heads; the first ones without scores.
   *
   * @return {@code {queryHeads, kvGroups}}
   */
  static int[][] heads(LlamaConfig c, Student s, float[] scores) {
    int perGroupTeacher = c.numKeyValueGroups();
    int perGroup = s.heads() / s.kvHeads();
    int[] groups;
    if (scores == null) {
      groups = first(s.kvHeads());
    } else {
      float[] groupScores = new float[c.numKeyValueHeads()];
      for (int h = 0; h < scores.length; h++) {
        groupScores[h / perGroupTeacher] += scores[h];
      }
      groups = ChannelImportance.top(groupScores, s.kvHeads());
    }
    int[] q = new int[s.heads()];
    for (int g = 0; g < groups.length; g++) {
      int[] within = first(perGroup);
      if (scores != null) {
        within =
            ChannelImportance.top(
                Arrays.copyOfRange(
                    scores, groups[g] * perGroupTeacher, (groups[g] + 1) * perGroupTeacher),
                perGroup);
      }
      for (int i = 0; i < perGroup; i++) {
        q[g * perGroup + i] = groups[g] * perGroupTeacher + within[i];
      }
    }
    return new int[][] {q, groups};
  }
}
