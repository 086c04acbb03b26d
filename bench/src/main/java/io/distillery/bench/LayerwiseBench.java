package io.distillery.bench;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import ai.djl.pytorch.jni.JniUtils;
import io.distillery.model.calib.EntropyCalibration;
import io.distillery.model.calib.LayerStats;
import io.distillery.model.linalg.HessianInverse;
import io.distillery.model.quant.GroupQuantizer;
import io.distillery.model.quant.QuantizedWeight;
import io.distillery.pruner.LinearPruner;
import io.distillery.pruner.SparsityPattern;
import io.distillery.pruner.magnitude.MagnitudePruner;
import io.distillery.pruner.sparsegpt.SparseGptPruner;
import io.distillery.pruner.wanda.WandaPruner;
import io.distillery.quantizer.awq.AwqClipSearch;
import io.distillery.quantizer.awq.AwqModel;
import io.distillery.quantizer.awq.AwqScaleSearch;
import io.distillery.quantizer.gptq.Gptq;
import io.distillery.quantizer.rtn.RoundToNearest;
import io.distillery.quantizer.smoothquant.InputScale;
import io.distillery.quantizer.smoothquant.SmoothQuant;
import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Method;
import java.lang.reflect.Modifier;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.function.Supplier;

/**
 * bench/layerwise: the compression methods ranked on single linear layers with the statistics LLMs
 * have at scale, because the project's small teacher has none of them (issue 18: its INT4 RTN is
 * already lossless and its inputs have no outlier channels, so it cannot rank GPTQ against RTN or
 * Wanda against magnitude).
 *
 * <p>The layers are generated here, seeded: weights Student-t (df 4, heavy tails as trained LLM
 * weights have), inputs x = (sqrt(1 - f) z + sqrt(f) F L) diag(c) with z i.i.d. normal, F L a
 * rank-16 factor part (correlated channels, share f of the variance), c log-normal channel
 * magnitudes; the outlier set multiplies a few channels (n / 256) to 20-100x the median channel
 * magnitude, as LLM.int8() (arXiv 2208.07339) and SmoothQuant (arXiv 2211.10438) report for models
 * from 6.7B up; the control set is the same data without them. Each method sees the calibration
 * tokens (through the same {@link LayerStats} the calibrator writes: abs-max, sum |x|, sum x^2, X^T
 * X, the |x| histogram) and is scored on held-out tokens by the relative output error ||W X - W'
 * X|| / ||W X|| (W8A8: ||W X - Q(W') Q(X)|| / ||W X||).
 *
 * <p>Args: {@code --shapes name:OUTxIN,...} (default o:2048x2048,up:5632x2048,q:4096x4096), {@code
 * --calib N} calibration tokens (default 4096: GPTQ's Hessian needs several times more tokens than
 * input channels to hold on unseen tokens), {@code --held N} held-out tokens (default 2048), {@code
 * --group G} (default 128), {@code --seed N}, {@code --threads N} engine threads, {@code
 * --act-order true} adds GPTQ with act-order, {@code --shared F} the share of each channel's
 * variance from the rank-16 factor part (default 0.5; the rest is independent per channel). Last
 * line: {@code layerwise gptq_vs_rtn=X awq_vs_rtn=X wanda_vs_mag=X sparsegpt_vs_wanda=X
 * smooth_vs_naive=X}, geometric means over the shapes on the outlier inputs.
 */
public final class LayerwiseBench {

  private static final int DF = 4;
  private static final int FACTORS = 16;
  private static final int BINS = 2048;

  /**
   * The calibrator's histogram headroom (CalibratorStage.HIST_HEADROOM): range = 2 x the first
   * batch's max.
   */
  private static final float HIST_HEADROOM = 2f;

  private static final double DAMP = 0.01;
  private static final int AWQ_GRID = 20;
  private static final int CLIP_STEPS = AwqModel.CLIP_STEPS;
  private static final double CLIP_MAX_SHRINK = AwqModel.CLIP_MAX_SHRINK;
  private static final int SPARSEGPT_BLOCK = 128;

  private LayerwiseBench() {}

  record LayerShape(String name, int out, int in) {}

  record Options(
      List<LayerShape> shapes,
      int calib,
      int held,
      int group,
      long seed,
      int threads,
      boolean actOrder,
      double shared) {

    static Options parse(String[] args) {
      Map<String, String> named = new LinkedHashMap<>();
      for (int i = 0; i < args.length; i++) {
        if (!args[i].startsWith("--") || i + 1 >= args.length) {
          throw new IllegalArgumentException("expected --name value pairs, got '" + args[i] + "'");
        }
        named.put(args[i].substring(2), args[++i]);
      }
      List<LayerShape> shapes = new ArrayList<>();
      for (String s :
          named.getOrDefault("shapes", "o:2048x2048,up:5632x2048,q:4096x4096").split(",")) {
        String[] nameDims = s.split(":");
        String[] dims = nameDims[nameDims.length - 1].split("x");
        if (dims.length != 2) {
          throw new IllegalArgumentException("--shapes: expected name:OUTxIN, got " + s);
        }
        shapes.add(
            new LayerShape(nameDims[0], Integer.parseInt(dims[0]), Integer.parseInt(dims[1])));
      }
      Options o =
          new Options(
              shapes,
              Integer.parseInt(named.getOrDefault("calib", "4096")),
              Integer.parseInt(named.getOrDefault("held", "2048")),
              Integer.parseInt(named.getOrDefault("group", "128")),
              Long.parseLong(named.getOrDefault("seed", "18")),
              Integer.parseInt(named.getOrDefault("threads", "0")),
              Boolean.parseBoolean(named.getOrDefault("act-order", "false")),
              Double.parseDouble(named.getOrDefault("shared", "0.5")));
      named
          .keySet()
          .removeAll(
              List.of(
                  "shapes", "calib", "held", "group", "seed", "threads", "act-order", "shared"));
      if (!(o.shared() >= 0 && o.shared() < 1)) {
        throw new IllegalArgumentException(
            "--shared: the factor share of each channel's variance, in [0, 1)");
      }
      if (!named.isEmpty()) {
        throw new IllegalArgumentException("unknown options " + named.keySet());
      }
      for (LayerShape s : shapes) {
        if (s.in() % o.group() != 0 || s.in() % 4 != 0) {
          throw new IllegalArgumentException(
              "--shapes: in "
                  + s.in()
                  + " of "
                  + s.name()
                  + " is not a multiple of the "
                  + "group "
                  + o.group()
                  + " and of 4");
        }
      }
      return o;
    }
  }

  /**
   * One layer input set: calibration statistics, the held-out inputs and the dense output on them.
   */
  record InputSet(
      String name,
      LayerStats stats,
      float[] calib,
      NDArray held,
      NDArray reference,
      double refNorm) {}

  public static void main(String[] args) {
    Options o = Options.parse(args);
    Engine engine = Engine.getEngine("PyTorch");
    if (o.threads() > 0) {
      JniUtils.setNumThreads(o.threads());
    }
    System.out.printf(
        Locale.ROOT,
        "engine=%s threads=%d calibration=%d held-out=%d tokens group=%d seed=%d "
            + "shared=%.2f shapes=%s%n",
        engine.getEngineName(),
        JniUtils.getNumThreads(),
        o.calib(),
        o.held(),
        o.group(),
        o.seed(),
        o.shared(),
        o.shapes());
    // method -> set -> one error per shape
    Map<String, Map<String, double[]>> errors = new LinkedHashMap<>();
    List<String> notes = new ArrayList<>();
    for (int si = 0; si < o.shapes().size(); si++) {
      LayerShape shape = o.shapes().get(si);
      long started = System.nanoTime();
      try (NDManager manager = engine.newBaseManager()) {
        SplittableRandom random = new SplittableRandom(o.seed() * 1_000_003L + si);
        float[] w = studentT(random, shape.out() * shape.in(), 0.02);
        Layer layer = Layer.generate(manager, random, shape.in(), o.calib(), o.held(), o.shared());
        for (boolean outliers : new boolean[] {true, false}) {
          InputSet set = layer.inputSet(manager, w, shape, outliers);
          Map<String, Double> e = run(manager, o, shape, w, set, notes);
          for (Map.Entry<String, Double> m : e.entrySet()) {
            errors.computeIfAbsent(m.getKey(), k -> new LinkedHashMap<>())
                    .computeIfAbsent(set.name(), k -> filled(o.shapes().size()))[si] =
                m.getValue();
          }
        }
      }
      System.out.printf(
          Locale.ROOT,
          "shape %s %dx%d done in %.0f s%n",
          shape.name(),
          shape.out(),
          shape.in(),
          (System.nanoTime() - started) / 1e9);
    }
    notes.stream().distinct().forEach(n -> System.out.println("note: " + n));
    printTable(o, errors);
    double gptq = ratio(errors, "gptq-w4", "rtn-w4", "outlier");
    double awq = ratio(errors, "awq-w4", "rtn-w4", "outlier");
    double wanda = ratio(errors, "wanda-2:4", "magnitude-2:4", "outlier");
    double sparsegpt = ratio(errors, "sparsegpt-2:4", "wanda-2:4", "outlier");
    double smooth = ratio(errors, "w8a8-sq0.5-auto", "w8a8-naive", "outlier");
    System.out.printf(
        Locale.ROOT,
        "control gptq_vs_rtn=%.3f awq_vs_rtn=%.3f wanda_vs_mag=%.3f "
            + "sparsegpt_vs_wanda=%.3f wanda_vs_mag_50=%.3f smooth_vs_naive=%.3f%n",
        ratio(errors, "gptq-w4", "rtn-w4", "control"),
        ratio(errors, "awq-w4", "rtn-w4", "control"),
        ratio(errors, "wanda-2:4", "magnitude-2:4", "control"),
        ratio(errors, "sparsegpt-2:4", "wanda-2:4", "control"),
        ratio(errors, "wanda-50%", "magnitude-50%", "control"),
        ratio(errors, "w8a8-sq0.5-auto", "w8a8-naive", "control"));
    System.out.printf(
        Locale.ROOT,
        "layerwise gptq_vs_rtn=%.3f awq_vs_rtn=%.3f wanda_vs_mag=%.3f "
            + "sparsegpt_vs_wanda=%.3f smooth_vs_naive=%.3f%n",
        gptq,
        awq,
        wanda,
        sparsegpt,
        smooth);
  }

  private static double[] filled(int n) {
    double[] d = new double[n];
    Arrays.fill(d, Double.NaN);
    return d;
  }

  /**
   * Every method on one layer and input set: name -> relative output error on the held-out tokens.
   */
  static Map<String, Double> run(
      NDManager manager, Options o, LayerShape shape, float[] w, InputSet set, List<String> notes) {
    int m = shape.out();
    int n = shape.in();
    int g = o.group();
    LayerStats st = set.stats();
    double[] hessian = st.hessian();
    Map<String, Double> e = new LinkedHashMap<>();
    Timer t = new Timer(shape.name() + "/" + set.name());

    e.put(
        "rtn-w4",
        t.time(
            "rtn-w4",
            () ->
                weightError(
                    manager,
                    set,
                    RoundToNearest.quantize(QuantizedWeight.Kind.INT4_GROUP, w, m, n, g)
                        .dequantize(),
                    m,
                    n)));
    e.put("awq-w4", t.time("awq-w4", () -> weightError(manager, set, awq(w, m, n, g, st), m, n)));
    e.put(
        "gptq-w4",
        t.time(
            "gptq-w4",
            () ->
                weightError(
                    manager,
                    set,
                    Gptq.quantize(w, m, n, hessian, g, DAMP, false).dequantize(),
                    m,
                    n)));
    if (o.actOrder()) {
      e.put(
          "gptq-w4-actorder",
          t.time(
              "gptq-w4-actorder",
              () ->
                  weightError(
                      manager,
                      set,
                      Gptq.quantize(w, m, n, hessian, g, DAMP, true).dequantize(),
                      m,
                      n)));
    }
    ThreeBit.rows(e, t, notes, manager, set, w, m, n, g, hessian);

    e.put(
        "w8a8-naive",
        t.time(
            "w8a8-naive",
            () ->
                w8a8Error(manager, set, w, m, n, null, SmoothQuant.inputScale(st.absMax(), null))));
    e.put(
        "w8a8-naive-entropy",
        t.time(
            "w8a8-naive-entropy",
            () ->
                w8a8Error(
                    manager,
                    set,
                    w,
                    m,
                    n,
                    null,
                    InputScale.ENTROPY.choose(st, null, w, m).scale())));
    for (double alpha : new double[] {0.5, 0.8}) {
      String a = "w8a8-sq" + alpha;
      float[] s = SmoothQuant.scales(st.absMax(), List.of(w), new int[] {m}, n, alpha);
      float[] ws = w.clone();
      SmoothQuant.fold(new float[n], List.of(ws), new int[] {m}, n, s);
      e.put(
          a,
          t.time(
              a,
              () ->
                  w8a8Error(
                      manager, set, w, m, n, s, InputScale.ABSMAX.choose(st, s, ws, m).scale())));
      e.put(
          a + "-entropy",
          t.time(
              a + "-entropy",
              () ->
                  w8a8Error(
                      manager, set, w, m, n, s, InputScale.ENTROPY.choose(st, s, ws, m).scale())));
      e.put(
          a + "-entropy-exact",
          t.time(
              a + "-entropy-exact",
              () -> w8a8Error(manager, set, w, m, n, s, exactEntropyScale(set.calib(), n, s))));
      e.put(
          a + "-auto",
          t.time(
              a + "-auto",
              () ->
                  w8a8Error(
                      manager, set, w, m, n, s, InputScale.AUTO.choose(st, s, ws, m).scale())));
    }

    for (SparsityPattern p :
        List.of(SparsityPattern.nOfM(2, 4), SparsityPattern.unstructured(0.5))) {
      String suffix = p instanceof SparsityPattern.NOfM ? "-2:4" : "-50%";
      List<Map.Entry<String, LinearPruner>> pruners =
          List.of(
              Map.entry("magnitude", new MagnitudePruner(p)),
              Map.entry("wanda", new WandaPruner(p, module -> st.l2Norm())),
              Map.entry(
                  "sparsegpt",
                  new SparseGptPruner(
                      p, module -> HessianInverse.narrowed(hessian), DAMP, SPARSEGPT_BLOCK)));
      for (Map.Entry<String, LinearPruner> pr : pruners) {
        String name = pr.getKey() + suffix;
        e.put(
            name,
            t.time(
                name, () -> weightError(manager, set, pr.getValue().prune(name, w, m, n), m, n)));
      }
    }
    return e;
  }

  /**
   * AWQ as the quantizer stage runs it: scale search, clip search in the scaled basis, RTN, scales
   * divided out.
   */
  static float[] awq(float[] w, int m, int n, int g, LayerStats st) {
    AwqScaleSearch.Result r =
        AwqScaleSearch.search(
            List.of(w), new int[] {m}, n, st.meanAbs(), st.gram(), st.sumSq(), g, AWQ_GRID);
    float[] ws = scaleColumns(w, m, n, r.scales(), false);
    AwqClipSearch.clip(ws, m, n, g, st.gram(), r.scales(), CLIP_STEPS, CLIP_MAX_SHRINK);
    float[] q = RoundToNearest.quantize(QuantizedWeight.Kind.INT4_GROUP, ws, m, n, g).dequantize();
    return scaleColumns(q, m, n, r.scales(), true);
  }

  /**
   * The INT8 input scale from the KL clip of the exact |x / s| histogram of the calibration tokens.
   */
  static float exactEntropyScale(float[] calib, int n, float[] s) {
    float max = 0;
    for (int i = 0; i < calib.length; i++) {
      max = Math.max(max, Math.abs(calib[i] / s[i % n]));
    }
    float histMax = max * HIST_HEADROOM;
    long[] hist = new long[BINS];
    for (int i = 0; i < calib.length; i++) {
      float a = Math.abs(calib[i] / s[i % n]);
      hist[(int) Math.min(BINS - 1, (long) (a / histMax * BINS))]++;
    }
    return EntropyCalibration.clip(hist, histMax, EntropyCalibration.INT8_LEVELS) / 127f;
  }

  static float[] scaleColumns(float[] w, int m, int n, float[] s, boolean divide) {
    float[] out = new float[w.length];
    for (int r = 0; r < m; r++) {
      for (int j = 0; j < n; j++) {
        out[r * n + j] = divide ? w[r * n + j] / s[j] : w[r * n + j] * s[j];
      }
    }
    return out;
  }

  /** ||X W'^T - X W^T|| / ||X W^T|| on the held-out tokens. */
  static double weightError(NDManager manager, InputSet set, float[] wq, int m, int n) {
    try (NDManager scope = manager.newSubManager()) {
      NDArray wt = scope.create(wq, new Shape(m, n));
      NDArray y = set.held().matMul(wt.transpose());
      return y.sub(set.reference()).norm().getFloat() / set.refNorm();
    }
  }

  /**
   * W8A8 with smoothing s (null: none): weights W diag(s) to symmetric INT8 per output channel,
   * inputs x / s to INT8 with one static scale, x' = clamp(round(x / s / scale), -128, 127) *
   * scale.
   */
  static double w8a8Error(
      NDManager manager, InputSet set, float[] w, int m, int n, float[] s, float inputScale) {
    float[] ws = s == null ? w : scaleColumns(w, m, n, s, false);
    float[] wq = GroupQuantizer.int8PerChannel(ws, m, n).dequantize();
    try (NDManager scope = manager.newSubManager()) {
      NDArray x = s == null ? set.held() : set.held().div(scope.create(s, new Shape(1, n)));
      NDArray xq = x.div(inputScale).round().clip(-128, 127).mul(inputScale);
      NDArray y = xq.matMul(scope.create(wq, new Shape(m, n)).transpose());
      return y.sub(set.reference()).norm().getFloat() / set.refNorm();
    }
  }

  /**
   * The W3 rows, run when this tree's RTN, GPTQ and AWQ take a bit width: found by reflection as
   * overloads of the W4 entry points with one more trailing int parameter (the width), and accepted
   * only if the codes use at most 8 levels; otherwise skipped with a note.
   */
  static final class ThreeBit {

    private static final int BITS = 3;

    private ThreeBit() {}

    static void rows(
        Map<String, Double> e,
        Timer t,
        List<String> notes,
        NDManager manager,
        InputSet set,
        float[] w,
        int m,
        int n,
        int g,
        double[] hessian) {
      LayerStats st = set.stats();
      Method rtn =
          withBits(
              RoundToNearest.class,
              "quantize",
              QuantizedWeight.Kind.class,
              float[].class,
              int.class,
              int.class,
              int.class);
      Method gptq =
          withBits(
              Gptq.class,
              "quantize",
              float[].class,
              int.class,
              int.class,
              double[].class,
              int.class,
              double.class,
              boolean.class);
      Method search =
          withBits(
              AwqScaleSearch.class,
              "search",
              List.class,
              int[].class,
              int.class,
              float[].class,
              double[].class,
              float[].class,
              int.class,
              int.class);
      Method clip =
          withBits(
              AwqClipSearch.class,
              "clip",
              float[].class,
              int.class,
              int.class,
              int.class,
              double[].class,
              float[].class,
              int.class,
              double.class);
      if (rtn == null || gptq == null) {
        notes.add(
            "W3 rows skipped: "
                + (rtn == null ? "RoundToNearest.quantize" : "Gptq.quantize")
                + " takes no bit width in this tree (the 'linalg' branch adds 2/3/8-bit grids)");
        return;
      }
      e.put(
          "rtn-w3",
          t.time(
              "rtn-w3",
              () ->
                  weightError(
                      manager,
                      set,
                      codes(invoke(rtn, QuantizedWeight.Kind.INT4_GROUP, w, m, n, g, BITS))
                          .dequantize(),
                      m,
                      n)));
      if (search == null || clip == null) {
        notes.add(
            "AWQ W3 row skipped: AwqScaleSearch.search or AwqClipSearch.clip takes no bit width in this tree");
      } else {
        e.put(
            "awq-w3",
            t.time(
                "awq-w3",
                () -> {
                  AwqScaleSearch.Result r =
                      (AwqScaleSearch.Result)
                          invoke(
                              search,
                              List.of(w),
                              new int[] {m},
                              n,
                              st.meanAbs(),
                              st.gram(),
                              st.sumSq(),
                              g,
                              AWQ_GRID,
                              BITS);
                  float[] ws = scaleColumns(w, m, n, r.scales(), false);
                  invoke(
                      clip, ws, m, n, g, st.gram(), r.scales(), CLIP_STEPS, CLIP_MAX_SHRINK, BITS);
                  float[] q =
                      codes(invoke(rtn, QuantizedWeight.Kind.INT4_GROUP, ws, m, n, g, BITS))
                          .dequantize();
                  return weightError(manager, set, scaleColumns(q, m, n, r.scales(), true), m, n);
                }));
      }
      e.put(
          "gptq-w3",
          t.time(
              "gptq-w3",
              () ->
                  weightError(
                      manager,
                      set,
                      codes(invoke(gptq, w, m, n, hessian, g, DAMP, false, BITS)).dequantize(),
                      m,
                      n)));
    }

    /** The public static overload {@code name(params..., int bits)}, or null. */
    static Method withBits(Class<?> type, String name, Class<?>... params) {
      Class<?>[] with = Arrays.copyOf(params, params.length + 1);
      with[params.length] = int.class;
      try {
        Method method = type.getMethod(name, with);
        return Modifier.isStatic(method.getModifiers()) ? method : null;
      } catch (NoSuchMethodException ex) {
        return null;
      }
    }

    static Object invoke(Method method, Object... args) {
      try {
        return method.invoke(null, args);
      } catch (IllegalAccessException ex) {
        throw new IllegalStateException(ex);
      } catch (InvocationTargetException ex) {
        throw ex.getCause() instanceof RuntimeException r
            ? r
            : new IllegalStateException(ex.getCause());
      }
    }

    /**
     * The weight, checked to use at most 2^3 code levels (so that the overload really took the
     * width).
     */
    static QuantizedWeight codes(Object result) {
      QuantizedWeight q = (QuantizedWeight) result;
      int lo = Arrays.stream(q.codes()).min().orElse(0);
      int hi = Arrays.stream(q.codes()).max().orElse(0);
      if (hi - lo >= 1 << BITS) {
        throw new IllegalStateException(
            "a 3-bit quantization returned codes in [" + lo + ", " + hi + "]");
      }
      return q;
    }
  }

  /**
   * The seeded generator of one layer's inputs: the shared normal and factor parts, and the channel
   * magnitudes.
   */
  record Layer(
      float[] base,
      float[] channel,
      int[] outlierChannels,
      float[] outlierFactor,
      int n,
      int calib,
      int held) {

    static Layer generate(
        NDManager manager, SplittableRandom random, int n, int calib, int held, double shared) {
      int rows = calib + held; // calibration, then held-out
      float[] z = normals(random, rows * n, 1);
      float[] f = normals(random, rows * FACTORS, 1);
      float[] l = normals(random, FACTORS * n, (float) (1 / Math.sqrt(FACTORS)));
      try (NDManager scope = manager.newSubManager()) {
        NDArray x =
            scope
                .create(z, new Shape(rows, n))
                .mul(Math.sqrt(1 - shared))
                .add(
                    scope
                        .create(f, new Shape(rows, FACTORS))
                        .matMul(scope.create(l, new Shape(FACTORS, n)))
                        .mul(Math.sqrt(shared)));
        z = x.toFloatArray();
      }
      float[] channel = new float[n];
      for (int j = 0; j < n; j++) {
        channel[j] = (float) Math.exp(0.5 * random.nextGaussian());
      }
      float[] sorted = channel.clone();
      Arrays.sort(sorted);
      float median = sorted[n / 2];
      int count = Math.max(4, n / 256);
      int[] picked = random.ints(0, n).distinct().limit(count).toArray();
      float[] factor = new float[count];
      for (int i = 0; i < count; i++) {
        factor[i] = (float) (median * (20 + 80 * random.nextDouble()) / channel[picked[i]]);
      }
      return new Layer(z, channel, picked, factor, n, calib, held);
    }

    InputSet inputSet(NDManager manager, float[] w, LayerShape shape, boolean outliers) {
      float[] scale = channel.clone();
      if (outliers) {
        for (int i = 0; i < outlierChannels.length; i++) {
          scale[outlierChannels[i]] *= outlierFactor[i];
        }
      }
      float[] x = new float[base.length];
      for (int i = 0; i < x.length; i++) {
        x[i] = base[i] * scale[i % n];
      }
      float[] c = Arrays.copyOfRange(x, 0, calib * n);
      LayerStats stats = stats(manager, shape.name(), c, n, calib);
      NDArray h =
          manager.create(Arrays.copyOfRange(x, calib * n, (calib + held) * n), new Shape(held, n));
      NDArray reference = h.matMul(manager.create(w, new Shape(shape.out(), n)).transpose());
      return new InputSet(
          outliers ? "outlier" : "control", stats, c, h, reference, reference.norm().getFloat());
    }
  }

  /**
   * The statistics the calibrator collects for one linear input (StatsAccumulator's rules, X^T X on
   * the engine).
   */
  static LayerStats stats(NDManager manager, String module, float[] x, int n, int tokens) {
    float[] absMax = new float[n];
    double[] sumAbs = new double[n];
    double[] sumSq = new double[n];
    for (int i = 0; i < x.length; i++) {
      int j = i % n;
      float a = Math.abs(x[i]);
      absMax[j] = Math.max(absMax[j], a);
      sumAbs[j] += a;
      sumSq[j] += (double) x[i] * x[i];
    }
    float max = 0;
    for (float a : absMax) {
      max = Math.max(max, a);
    }
    float histMax = max * HIST_HEADROOM;
    long[] hist = new long[BINS];
    for (float v : x) {
      hist[(int) Math.min(BINS - 1, (long) (Math.abs(v) / histMax * BINS))]++;
    }
    double[] gram;
    try (NDManager scope = manager.newSubManager()) {
      NDArray xd = scope.create(x, new Shape(tokens, n)).toType(DataType.FLOAT64, false);
      gram = xd.transpose().matMul(xd).toDoubleArray();
    }
    float[] sa = new float[n];
    float[] sq = new float[n];
    for (int j = 0; j < n; j++) {
      sa[j] = (float) sumAbs[j];
      sq[j] = (float) sumSq[j];
    }
    return new LayerStats(module, n, tokens, absMax, sa, sq, gram, hist, histMax);
  }

  /** Student-t with {@link #DF} degrees of freedom, scaled to standard deviation {@code std}. */
  static float[] studentT(SplittableRandom random, int count, double std) {
    float[] out = new float[count];
    double unit = Math.sqrt((DF - 2.0) / DF);
    for (int i = 0; i < count; i++) {
      double chi2 = 0;
      for (int k = 0; k < DF; k++) {
        double g = random.nextGaussian();
        chi2 += g * g;
      }
      out[i] = (float) (std * unit * random.nextGaussian() / Math.sqrt(chi2 / DF));
    }
    return out;
  }

  static float[] normals(SplittableRandom random, int count, float std) {
    float[] out = new float[count];
    for (int i = 0; i < count; i++) {
      out[i] = (float) (std * random.nextGaussian());
    }
    return out;
  }

  /**
   * Geometric mean over shapes of error(a) / error(b) on one input set; NaN when either is missing.
   */
  static double ratio(Map<String, Map<String, double[]>> errors, String a, String b, String set) {
    if (!errors.containsKey(a) || !errors.containsKey(b)) {
      return Double.NaN;
    }
    double[] ea = errors.get(a).get(set);
    double[] eb = errors.get(b).get(set);
    double log = 0;
    for (int i = 0; i < ea.length; i++) {
      log += Math.log(ea[i] / eb[i]);
    }
    return Math.exp(log / ea.length);
  }

  static void printTable(Options o, Map<String, Map<String, double[]>> errors) {
    StringBuilder head =
        new StringBuilder(String.format(Locale.ROOT, "%-26s", "relative output error"));
    for (String set : List.of("outlier", "control")) {
      for (LayerShape s : o.shapes()) {
        head.append(
            String.format(
                Locale.ROOT, " %16s", set + " " + s.name() + " " + s.out() + "x" + s.in()));
      }
    }
    System.out.println(head);
    for (Map.Entry<String, Map<String, double[]>> m : errors.entrySet()) {
      StringBuilder row = new StringBuilder(String.format(Locale.ROOT, "%-26s", m.getKey()));
      for (String set : List.of("outlier", "control")) {
        for (double v : m.getValue().getOrDefault(set, filled(o.shapes().size()))) {
          row.append(String.format(Locale.ROOT, " %16.5f", v));
        }
      }
      System.out.println(row);
    }
  }

  /** Prints each method's wall time, so a slow method is visible while the run goes. */
  record Timer(String label) {

    double time(String method, Supplier<Double> body) {
      long t0 = System.nanoTime();
      double v = body.get();
      System.out.printf(
          Locale.ROOT,
          "  %s %-26s err=%.5f %.1f s%n",
          label,
          method,
          v,
          (System.nanoTime() - t0) / 1e9);
      return v;
    }
  }
}
