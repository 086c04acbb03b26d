package io.distillery.model.config;

import com.fasterxml.jackson.core.JacksonException;
import com.fasterxml.jackson.core.JsonFactory;
import com.fasterxml.jackson.core.StreamReadFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.databind.json.JsonMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Objects;
import java.util.Set;
import java.util.TreeMap;

/**
 * The Hugging Face {@code config.json} of a Llama-family decoder, parsed and validated in one
 * place. Field names follow the JSON keys in camelCase.
 *
 * @param architecture Llama, Mistral or Qwen2
 * @param vocabSize {@code vocab_size}
 * @param hiddenSize {@code hidden_size}
 * @param intermediateSize {@code intermediate_size} (SwiGLU width)
 * @param numHiddenLayers {@code num_hidden_layers}
 * @param numAttentionHeads {@code num_attention_heads}
 * @param numKeyValueHeads {@code num_key_value_heads}; divides the attention heads (GQA)
 * @param headDim {@code head_dim}, or hidden / heads when the config has none; even
 * @param maxPositionEmbeddings {@code max_position_embeddings}
 * @param rmsNormEps {@code rms_norm_eps}
 * @param ropeTheta {@code rope_theta}, the RoPE base
 * @param ropeScaling {@code rope_scaling}, or {@code null} for none
 * @param tieWordEmbeddings {@code tie_word_embeddings}: the LM head reuses the embedding matrix
 * @param attentionBias whether q/k/v projections carry biases (Llama's {@code attention_bias},
 *     which also gives o_proj a bias; always true for Qwen2, whose o_proj has none; false for
 *     Mistral)
 * @param slidingWindow Mistral's {@code sliding_window}, or {@code null} for full attention
 * @param bosTokenId {@code bos_token_id}, or {@code null}
 * @param eosTokenIds {@code eos_token_id} (one id or a list, as Llama 3 has)
 * @param padTokenId {@code pad_token_id}, or {@code null}
 * @param torchDtype {@code torch_dtype}: float32, float16 or bfloat16
 */
public record LlamaConfig(
    Architecture architecture,
    int vocabSize,
    int hiddenSize,
    int intermediateSize,
    int numHiddenLayers,
    int numAttentionHeads,
    int numKeyValueHeads,
    int headDim,
    int maxPositionEmbeddings,
    double rmsNormEps,
    double ropeTheta,
    RopeScaling ropeScaling,
    boolean tieWordEmbeddings,
    boolean attentionBias,
    Integer slidingWindow,
    Integer bosTokenId,
    List<Integer> eosTokenIds,
    Integer padTokenId,
    String torchDtype) {

  /** File name inside a model directory. */
  public static final String FILE_NAME = "config.json";

  private static final Set<String> TORCH_DTYPES = Set.of("float32", "float16", "bfloat16");

  private static final ObjectMapper JSON =
      JsonMapper.builder(
              JsonFactory.builder().enable(StreamReadFeature.STRICT_DUPLICATE_DETECTION).build())
          .enable(SerializationFeature.INDENT_OUTPUT)
          .build();

  public LlamaConfig {
    Objects.requireNonNull(architecture, "architecture");
    positive("vocab_size", vocabSize);
    positive("hidden_size", hiddenSize);
    positive("intermediate_size", intermediateSize);
    positive("num_hidden_layers", numHiddenLayers);
    positive("num_attention_heads", numAttentionHeads);
    positive("num_key_value_heads", numKeyValueHeads);
    positive("head_dim", headDim);
    positive("max_position_embeddings", maxPositionEmbeddings);
    if (numAttentionHeads % numKeyValueHeads != 0) {
      throw new IllegalArgumentException(
          "num_key_value_heads "
              + numKeyValueHeads
              + " does not divide num_attention_heads "
              + numAttentionHeads);
    }
    if (headDim % 2 != 0) {
      throw new IllegalArgumentException(
          "head_dim " + headDim + " is odd; rotary embeddings need pairs");
    }
    if (!(rmsNormEps > 0) || Double.isInfinite(rmsNormEps)) {
      throw new IllegalArgumentException(
          "rms_norm_eps must be a positive number, got " + rmsNormEps);
    }
    if (!(ropeTheta > 0) || Double.isInfinite(ropeTheta)) {
      throw new IllegalArgumentException("rope_theta must be a positive number, got " + ropeTheta);
    }
    if (architecture == Architecture.QWEN2 && !attentionBias) {
      throw new IllegalArgumentException(
          "Qwen2ForCausalLM always has q/k/v biases; attentionBias must be true");
    }
    if (architecture == Architecture.MISTRAL && attentionBias) {
      throw new IllegalArgumentException("MistralForCausalLM has no attention biases");
    }
    if (slidingWindow != null) {
      positive("sliding_window", slidingWindow);
    }
    nonNegative("bos_token_id", bosTokenId);
    nonNegative("pad_token_id", padTokenId);
    eosTokenIds = List.copyOf(eosTokenIds == null ? List.of() : eosTokenIds);
    for (Integer eos : eosTokenIds) {
      nonNegative("eos_token_id", eos);
    }
    torchDtype = torchDtype == null ? "float32" : torchDtype;
    if (!TORCH_DTYPES.contains(torchDtype)) {
      throw new IllegalArgumentException(
          "torch_dtype '" + torchDtype + "' is not one of " + TORCH_DTYPES);
    }
  }

  private static void positive(String key, int value) {
    if (value <= 0) {
      throw new IllegalArgumentException(key + " must be positive, got " + value);
    }
  }

  private static void nonNegative(String key, Integer value) {
    if (value != null && value < 0) {
      throw new IllegalArgumentException(key + " must not be negative, got " + value);
    }
  }

  /** Query heads per key/value head. */
  public int numKeyValueGroups() {
    return numAttentionHeads / numKeyValueHeads;
  }

  /** Output features of q_proj (input features of o_proj). */
  public int attentionWidth() {
    return numAttentionHeads * headDim;
  }

  /** Output features of k_proj and v_proj. */
  public int keyValueWidth() {
    return numKeyValueHeads * headDim;
  }

  /** Whether o_proj carries a bias (Llama with {@code attention_bias: true}). */
  public boolean outputProjectionBias() {
    return architecture == Architecture.LLAMA && attentionBias;
  }

  /** A copy with another {@code torch_dtype}. */
  public LlamaConfig withTorchDtype(String dtype) {
    return new LlamaConfig(
        architecture,
        vocabSize,
        hiddenSize,
        intermediateSize,
        numHiddenLayers,
        numAttentionHeads,
        numKeyValueHeads,
        headDim,
        maxPositionEmbeddings,
        rmsNormEps,
        ropeTheta,
        ropeScaling,
        tieWordEmbeddings,
        attentionBias,
        slidingWindow,
        bosTokenId,
        eosTokenIds,
        padTokenId,
        dtype);
  }

  /** Reads {@code config.json} (or a model directory containing one). */
  public static LlamaConfig read(Path path) throws IOException {
    Path file = Files.isDirectory(path) ? path.resolve(FILE_NAME) : path;
    JsonNode root;
    try {
      root = JSON.readTree(Files.readAllBytes(file));
    } catch (JacksonException e) {
      throw new ModelConfigException(file, "not valid JSON: " + e.getOriginalMessage(), e);
    }
    return fromJson(root, file);
  }

  /**
   * Parses config JSON.
   *
   * @param source named in error messages
   * @throws ModelConfigException if the JSON is invalid, the architecture unsupported or the values
   *     inconsistent
   */
  public static LlamaConfig parse(String json, Path source) throws ModelConfigException {
    JsonNode root;
    try {
      root = JSON.readTree(json);
    } catch (JacksonException e) {
      throw new ModelConfigException(source, "not valid JSON: " + e.getOriginalMessage(), e);
    }
    return fromJson(root, source);
  }

  private static LlamaConfig fromJson(JsonNode root, Path source) throws ModelConfigException {
    if (root == null || !root.isObject()) {
      throw new ModelConfigException(source, "not a JSON object");
    }
    return new ConfigReader(root, source).read();
  }

  /** Writes {@code config.json} into {@code directory}. */
  public void write(Path directory) throws IOException {
    Files.writeString(directory.resolve(FILE_NAME), toJson(), StandardCharsets.UTF_8);
  }

  /**
   * The config as transformers writes it for this architecture (keys sorted, as {@code
   * PretrainedConfig.to_json_string} does): for Llama, every key {@code LlamaConfig} reads.
   */
  public String toJson() {
    TreeMap<String, Object> keys = new TreeMap<>();
    keys.put("architectures", List.of(architecture.className()));
    keys.put("model_type", architecture.modelType());
    keys.put("attention_dropout", 0.0);
    keys.put("bos_token_id", bosTokenId);
    keys.put(
        "eos_token_id",
        switch (eosTokenIds.size()) {
          case 0 -> null;
          case 1 -> eosTokenIds.getFirst();
          default -> eosTokenIds;
        });
    if (padTokenId != null) {
      keys.put("pad_token_id", padTokenId);
    }
    keys.put("head_dim", headDim);
    keys.put("hidden_act", "silu");
    keys.put("hidden_size", hiddenSize);
    keys.put("initializer_range", 0.02);
    keys.put("intermediate_size", intermediateSize);
    keys.put("max_position_embeddings", maxPositionEmbeddings);
    keys.put("num_attention_heads", numAttentionHeads);
    keys.put("num_hidden_layers", numHiddenLayers);
    keys.put("num_key_value_heads", numKeyValueHeads);
    keys.put("rms_norm_eps", rmsNormEps);
    keys.put("rope_theta", ropeTheta);
    keys.put("rope_scaling", ropeScaling == null ? null : ropeScalingJson(ropeScaling));
    keys.put("tie_word_embeddings", tieWordEmbeddings);
    keys.put("torch_dtype", torchDtype);
    keys.put("use_cache", true);
    keys.put("vocab_size", vocabSize);
    switch (architecture) {
      case LLAMA -> {
        keys.put("attention_bias", attentionBias);
        keys.put("mlp_bias", false);
        keys.put("pretraining_tp", 1);
      }
      case MISTRAL -> keys.put("sliding_window", slidingWindow);
      case QWEN2 -> {
        keys.put("use_sliding_window", false);
        keys.put("sliding_window", null);
        keys.put("max_window_layers", numHiddenLayers);
      }
    }
    try {
      return JSON.writeValueAsString(JSON.valueToTree(keys)) + "\n";
    } catch (JacksonException e) {
      throw new IllegalStateException("config serialisation failed", e);
    }
  }

  private static ObjectNode ropeScalingJson(RopeScaling scaling) {
    ObjectNode node = JSON.createObjectNode();
    node.put("rope_type", scaling.type().jsonName());
    node.put("factor", scaling.factor());
    if (scaling.type() == RopeScaling.Type.LLAMA3) {
      node.put("low_freq_factor", scaling.lowFreqFactor());
      node.put("high_freq_factor", scaling.highFreqFactor());
    }
    if (scaling.originalMaxPositionEmbeddings() > 0) {
      node.put("original_max_position_embeddings", scaling.originalMaxPositionEmbeddings());
    }
    return node;
  }

  public static Builder builder() {
    return new Builder();
  }

  /** Builds configs in code (tests, random initialisation, pruned students). */
  public static final class Builder {
    private Architecture architecture = Architecture.LLAMA;
    private int vocabSize;
    private int hiddenSize;
    private int intermediateSize;
    private int numHiddenLayers;
    private int numAttentionHeads;
    private int numKeyValueHeads;
    private int headDim;
    private int maxPositionEmbeddings = 2048;
    private double rmsNormEps = 1e-6;
    private double ropeTheta = 10000.0;
    private RopeScaling ropeScaling;
    private boolean tieWordEmbeddings;
    private boolean attentionBias;
    private Integer slidingWindow;
    private Integer bosTokenId = 1;
    private List<Integer> eosTokenIds = List.of(2);
    private Integer padTokenId;
    private String torchDtype = "float32";

    private Builder() {}

    public Builder architecture(Architecture value) {
      architecture = value;
      attentionBias = value == Architecture.QWEN2;
      return this;
    }

    public Builder vocabSize(int value) {
      vocabSize = value;
      return this;
    }

    public Builder hiddenSize(int value) {
      hiddenSize = value;
      return this;
    }

    public Builder intermediateSize(int value) {
      intermediateSize = value;
      return this;
    }

    public Builder numHiddenLayers(int value) {
      numHiddenLayers = value;
      return this;
    }

    public Builder numAttentionHeads(int value) {
      numAttentionHeads = value;
      return this;
    }

    /** Defaults to the number of attention heads (no grouping). */
    public Builder numKeyValueHeads(int value) {
      numKeyValueHeads = value;
      return this;
    }

    /** Defaults to hidden / heads, which must then divide evenly. */
    public Builder headDim(int value) {
      headDim = value;
      return this;
    }

    public Builder maxPositionEmbeddings(int value) {
      maxPositionEmbeddings = value;
      return this;
    }

    public Builder rmsNormEps(double value) {
      rmsNormEps = value;
      return this;
    }

    public Builder ropeTheta(double value) {
      ropeTheta = value;
      return this;
    }

    public Builder ropeScaling(RopeScaling value) {
      ropeScaling = value;
      return this;
    }

    public Builder tieWordEmbeddings(boolean value) {
      tieWordEmbeddings = value;
      return this;
    }

    public Builder attentionBias(boolean value) {
      attentionBias = value;
      return this;
    }

    public Builder slidingWindow(Integer value) {
      slidingWindow = value;
      return this;
    }

    public Builder bosTokenId(Integer value) {
      bosTokenId = value;
      return this;
    }

    public Builder eosTokenIds(List<Integer> value) {
      eosTokenIds = value;
      return this;
    }

    public Builder padTokenId(Integer value) {
      padTokenId = value;
      return this;
    }

    public Builder torchDtype(String value) {
      torchDtype = value;
      return this;
    }

    /**
     * @throws IllegalArgumentException naming the first inconsistent key
     */
    public LlamaConfig build() {
      int kvHeads = numKeyValueHeads == 0 ? numAttentionHeads : numKeyValueHeads;
      int dim = headDim;
      if (dim == 0) {
        dim = derivedHeadDim(hiddenSize, numAttentionHeads);
      }
      return new LlamaConfig(
          architecture,
          vocabSize,
          hiddenSize,
          intermediateSize,
          numHiddenLayers,
          numAttentionHeads,
          kvHeads,
          dim,
          maxPositionEmbeddings,
          rmsNormEps,
          ropeTheta,
          ropeScaling,
          tieWordEmbeddings,
          attentionBias,
          slidingWindow,
          bosTokenId,
          eosTokenIds,
          padTokenId,
          torchDtype);
    }
  }

  static int derivedHeadDim(int hiddenSize, int heads) {
    if (heads <= 0) {
      throw new IllegalArgumentException("num_attention_heads must be positive, got " + heads);
    }
    if (hiddenSize % heads != 0) {
      throw new IllegalArgumentException(
          "num_attention_heads "
              + heads
              + " does not divide hidden_size "
              + hiddenSize
              + " (and no head_dim is given)");
    }
    return hiddenSize / heads;
  }

  /**
   * Reads one config object; every problem becomes a {@link ModelConfigException} naming the key.
   */
  private record ConfigReader(JsonNode root, Path source) {

    LlamaConfig read() throws ModelConfigException {
      Architecture architecture = architecture();
      String act = optionalText("hidden_act", "silu");
      if (!act.equals("silu")) {
        throw problem("hidden_act '" + act + "' is not supported (only silu, as in SwiGLU)");
      }
      if (optionalBoolean("mlp_bias", false)) {
        throw problem("mlp_bias=true is not supported");
      }
      int hidden = requiredInt("hidden_size");
      int heads = requiredInt("num_attention_heads");
      Integer explicitHeadDim = optionalInt("head_dim");
      boolean attentionBias =
          switch (architecture) {
            case LLAMA -> optionalBoolean("attention_bias", false);
            case MISTRAL -> false;
            case QWEN2 -> true;
          };
      Integer slidingWindow = null;
      if (architecture == Architecture.MISTRAL) {
        slidingWindow = optionalInt("sliding_window");
      } else if (architecture == Architecture.QWEN2
          && optionalBoolean("use_sliding_window", false)) {
        throw problem("use_sliding_window=true is not supported for Qwen2");
      }
      JsonNode ropeParameters = root.get("rope_parameters");
      double ropeTheta =
          ropeParameters != null && ropeParameters.isObject() && ropeParameters.has("rope_theta")
              ? number(ropeParameters.get("rope_theta"), "rope_parameters.rope_theta")
              : optionalDouble("rope_theta", 10000.0);
      try {
        int headDim = explicitHeadDim != null ? explicitHeadDim : derivedHeadDim(hidden, heads);
        return new LlamaConfig(
            architecture,
            requiredInt("vocab_size"),
            hidden,
            requiredInt("intermediate_size"),
            requiredInt("num_hidden_layers"),
            heads,
            optionalInt("num_key_value_heads") == null ? heads : optionalInt("num_key_value_heads"),
            headDim,
            optionalInt("max_position_embeddings") == null
                ? 2048
                : optionalInt("max_position_embeddings"),
            optionalDouble("rms_norm_eps", 1e-6),
            ropeTheta,
            ropeScaling(ropeParameters),
            optionalBoolean("tie_word_embeddings", false),
            attentionBias,
            slidingWindow,
            optionalInt("bos_token_id"),
            eosTokenIds(),
            optionalInt("pad_token_id"),
            torchDtype());
      } catch (IllegalArgumentException e) {
        throw new ModelConfigException(source, e.getMessage(), e);
      }
    }

    private Architecture architecture() throws ModelConfigException {
      String modelType = optionalText("model_type", null);
      Architecture byType = modelType == null ? null : Architecture.fromModelType(modelType);
      JsonNode architectures = root.get("architectures");
      if (architectures != null && !architectures.isNull()) {
        if (!architectures.isArray() || architectures.isEmpty()) {
          throw problem("architectures is not a non-empty array");
        }
        List<String> names = new ArrayList<>();
        for (JsonNode name : architectures) {
          Architecture found = Architecture.fromClassName(name.asText());
          if (found != null) {
            if (byType != null && byType != found) {
              throw problem(
                  "architectures "
                      + architectures
                      + " disagrees with model_type '"
                      + modelType
                      + "'");
            }
            return found;
          }
          names.add(name.asText());
        }
        throw problem(
            "unsupported architecture "
                + names
                + " (supported: "
                + Architecture.classNames()
                + ")");
      }
      if (byType == null) {
        throw problem(
            "unsupported model_type '"
                + modelType
                + "' and no supported architectures (supported: "
                + Architecture.classNames()
                + ")");
      }
      return byType;
    }

    private RopeScaling ropeScaling(JsonNode ropeParameters) throws ModelConfigException {
      JsonNode node = root.get("rope_scaling");
      String key = "rope_scaling";
      if ((node == null || node.isNull()) && ropeParameters != null && ropeParameters.isObject()) {
        node = ropeParameters;
        key = "rope_parameters";
      }
      if (node == null || node.isNull()) {
        return null;
      }
      if (!node.isObject()) {
        throw problem(key + " is not an object or null");
      }
      JsonNode typeNode = node.has("rope_type") ? node.get("rope_type") : node.get("type");
      if (typeNode == null || !typeNode.isTextual()) {
        throw problem(key + " has no rope_type (or type)");
      }
      String typeName = typeNode.textValue();
      if (typeName.equals("default")) {
        return null;
      }
      RopeScaling.Type type = RopeScaling.Type.fromJsonName(typeName);
      if (type == null) {
        throw problem(
            key + " type '" + typeName + "' is not supported (supported: linear, dynamic, llama3)");
      }
      double factor = number(node.get("factor"), key + ".factor");
      int original =
          node.has("original_max_position_embeddings")
              ? intValue(
                  node.get("original_max_position_embeddings"),
                  key + ".original_max_position_embeddings")
              : 0;
      try {
        return switch (type) {
          case LINEAR -> RopeScaling.linear(factor);
          case DYNAMIC -> new RopeScaling(type, factor, 0, 0, original);
          case LLAMA3 ->
              RopeScaling.llama3(
                  factor,
                  number(node.get("low_freq_factor"), key + ".low_freq_factor"),
                  number(node.get("high_freq_factor"), key + ".high_freq_factor"),
                  original);
        };
      } catch (IllegalArgumentException e) {
        throw new ModelConfigException(source, e.getMessage(), e);
      }
    }

    private List<Integer> eosTokenIds() throws ModelConfigException {
      JsonNode node = root.get("eos_token_id");
      if (node == null || node.isNull()) {
        return List.of();
      }
      if (node.isArray()) {
        List<Integer> ids = new ArrayList<>();
        for (JsonNode id : node) {
          ids.add(intValue(id, "eos_token_id"));
        }
        return ids;
      }
      return List.of(intValue(node, "eos_token_id"));
    }

    private String torchDtype() throws ModelConfigException {
      String dtype = optionalText("torch_dtype", null);
      return dtype != null ? dtype : optionalText("dtype", "float32");
    }

    private int requiredInt(String key) throws ModelConfigException {
      Integer value = optionalInt(key);
      if (value == null) {
        throw problem("missing " + key);
      }
      return value;
    }

    private Integer optionalInt(String key) throws ModelConfigException {
      JsonNode node = root.get(key);
      return node == null || node.isNull() ? null : intValue(node, key);
    }

    private int intValue(JsonNode node, String key) throws ModelConfigException {
      if (node == null || !node.isIntegralNumber() || !node.canConvertToInt()) {
        throw problem(key + " is " + node + ", not a 32-bit integer");
      }
      return node.intValue();
    }

    private double optionalDouble(String key, double fallback) throws ModelConfigException {
      JsonNode node = root.get(key);
      return node == null || node.isNull() ? fallback : number(node, key);
    }

    private double number(JsonNode node, String key) throws ModelConfigException {
      if (node == null || !node.isNumber()) {
        throw problem(key + " is " + node + ", not a number");
      }
      return node.doubleValue();
    }

    private boolean optionalBoolean(String key, boolean fallback) throws ModelConfigException {
      JsonNode node = root.get(key);
      if (node == null || node.isNull()) {
        return fallback;
      }
      if (!node.isBoolean()) {
        throw problem(key + " is " + node + ", not true or false");
      }
      return node.booleanValue();
    }

    private String optionalText(String key, String fallback) throws ModelConfigException {
      JsonNode node = root.get(key);
      if (node == null || node.isNull()) {
        return fallback;
      }
      if (!node.isTextual()) {
        throw problem(key + " is " + node + ", not a string");
      }
      return node.textValue();
    }

    private ModelConfigException problem(String message) {
      return new ModelConfigException(source, message);
    }
  }
}
