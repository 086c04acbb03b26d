package io.distillery.distiller.student;

import static io.distillery.platform.model.llama.WeightSlices.expand;
import static io.distillery.platform.model.llama.WeightSlices.first;
import static io.distillery.platform.model.llama.WeightSlices.pick;
import static io.distillery.platform.model.llama.WeightSlices.slice;

import io.distillery.distiller.DistillerParams.Student;
import io.distillery.platform.model.config.LlamaConfig;
import io.distillery.platform.model.config.LlamaTensorNames;
import io.distillery.platform.model.llama.LlamaModel;
import io.distillery.platform.model.safetensors.Checkpoint;
import io.distillery.platform.model.safetensors.DType;
import io.distillery.platform.model.safetensors.SafetensorsWriter;
import io.distillery.platform.model.safetensors.TensorData;
import io.distillery.platform.model.safetensors.TensorSource;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * Initialises a student from the teacher's weights (Minitron-style, without importance scores): layer selection takes
 * {@code student.layers} evenly spaced teacher layers (first and last always kept); width slicing keeps the FIRST
 * {@code kvHeads} kv groups, and within each the first {@code heads/kvHeads} query heads of that group, the first
 * {@code hidden} residual dimensions and the first {@code intermediate} MLP channels. The teacher's head dimension is
 * kept (slicing inside a head would break RoPE's rotate-half pairing), so the student's attention width is
 * {@code heads * teacher.headDim}. (Implemented locally: the distiller cannot depend on the pruner module.)
 */
public final class StudentInit {

  private StudentInit() {}

  /** Evenly spaced layer indices: round(i * (n-1) / (k-1)); k == 1 keeps layer 0. */
  public static int[] selectLayers(int teacherLayers, int studentLayers) {
    int[] out = new int[studentLayers];
    for (int i = 0; i < studentLayers; i++) {
      out[i] = studentLayers == 1 ? 0 : (int) Math.round(i * (teacherLayers - 1) / (double) (studentLayers - 1));
    }
    return out;
  }

  /** The student's config: the teacher's with the student's shape. */
  public static LlamaConfig studentConfig(LlamaConfig c, Student s) {
    s.requireFits(c);
    return new LlamaConfig(c.architecture(), c.vocabSize(), s.hidden(), s.intermediate(), s.layers(), s.heads(),
        s.kvHeads(), c.headDim(), c.maxPositionEmbeddings(), c.rmsNormEps(), c.ropeTheta(), c.ropeScaling(),
        c.tieWordEmbeddings(), c.attentionBias(), c.slidingWindow(), c.bosTokenId(), c.eosTokenIds(), c.padTokenId(),
        "float32");
  }

  /** Slices the teacher and writes {@code config.json} and F32 {@code model.safetensors} into {@code out}. */
  public static LlamaConfig write(LlamaModel teacher, Student s, Path out) throws IOException {
    LlamaConfig c = teacher.config();
    LlamaConfig sc = studentConfig(c, s);
    int[] layers = selectLayers(c.numHiddenLayers(), s.layers());
    int hd = c.headDim();
    int qPerKvTeacher = c.numKeyValueGroups();
    int qPerKv = s.heads() / s.kvHeads();
    int[] qHeads = new int[s.heads()];
    for (int g = 0; g < s.kvHeads(); g++) {
      for (int q = 0; q < qPerKv; q++) {
        qHeads[g * qPerKv + q] = g * qPerKvTeacher + q;
      }
    }
    int[] qRows = expand(qHeads, hd);
    int[] kvRows = expand(first(s.kvHeads()), hd);
    int[] hid = first(s.hidden());
    int[] ch = first(s.intermediate());
    int th = c.hiddenSize();
    Map<String, TensorSource> tensors = new LinkedHashMap<>();
    for (Map.Entry<String, long[]> e : LlamaTensorNames.shapes(sc).entrySet()) {
      String name = e.getKey();
      float[] v;
      if (!name.startsWith("model.layers.")) {
        float[] old = teacher.parameters().get(name).toFloatArray();
        v = name.endsWith("norm.weight") ? pick(old, hid) : slice(old, c.vocabSize(), th, first(c.vocabSize()), hid);
      } else {
        int nl = Integer.parseInt(name.split("\\.")[2]);
        String suffix = name.substring(LlamaTensorNames.layerPrefix(nl).length());
        float[] old = teacher.parameters().get(LlamaTensorNames.layerPrefix(layers[nl]) + suffix).toFloatArray();
        v = switch (suffix) {
          case "self_attn.q_proj.weight" -> slice(old, c.attentionWidth(), th, qRows, hid);
          case "self_attn.q_proj.bias" -> pick(old, qRows);
          case "self_attn.k_proj.weight", "self_attn.v_proj.weight" -> slice(old, c.keyValueWidth(), th, kvRows, hid);
          case "self_attn.k_proj.bias", "self_attn.v_proj.bias" -> pick(old, kvRows);
          case "self_attn.o_proj.weight" -> slice(old, th, c.attentionWidth(), hid, qRows);
          case "self_attn.o_proj.bias" -> pick(old, hid);
          case "mlp.gate_proj.weight", "mlp.up_proj.weight" -> slice(old, c.intermediateSize(), th, ch, hid);
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




}
