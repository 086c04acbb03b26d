package io.distillery.serving;

import io.distillery.model.llama.SamplingParams;
import io.vertx.core.json.JsonArray;
import io.vertx.core.json.JsonObject;

/**
 * A validated {@code POST /v1/completions} body (OpenAI completions fields; see protocol.md).
 * Temperature defaults to 0 (greedy: the same prompt gets the same answer, which is what misfire
 * comparisons need); {@code seed} makes a sampled answer reproducible. Other OpenAI fields (user,
 * stop, ...) are ignored.
 *
 * @param model the deployment id, or null when the node hosts exactly one
 * @param verify the expected exact answer, or null; a mismatch is a WRONG_ANSWER misfire
 */
public record CompletionRequest(
    String model, String prompt, int maxTokens, SamplingParams sampling, String verify) {

  /** Parses and checks a request body against the node's limits. */
  public static CompletionRequest parse(JsonObject body, ServingConfig config) {
    String model = optionalString(body, "model");
    Object prompt = body.getValue("prompt");
    if (prompt == null) {
      throw BadRequestException.invalid("prompt", "prompt is required");
    }
    if (!(prompt instanceof String text)) {
      throw BadRequestException.invalid("prompt", "prompt must be a string, got " + kind(prompt));
    }
    if (text.isEmpty()) {
      throw BadRequestException.invalid("prompt", "prompt must not be empty");
    }
    if (text.length() > config.maxPromptChars()) {
      throw BadRequestException.invalid(
          "prompt",
          "prompt has "
              + text.length()
              + " characters; this node accepts at"
              + " most "
              + config.maxPromptChars());
    }
    int maxTokens = config.defaultMaxTokens();
    if (body.containsKey("max_tokens") && body.getValue("max_tokens") != null) {
      Object v = body.getValue("max_tokens");
      if (!(v instanceof Number n) || n.doubleValue() != Math.rint(n.doubleValue())) {
        throw BadRequestException.invalid(
            "max_tokens", "max_tokens must be a whole number, got " + v);
      }
      if (n.doubleValue() < 1 || n.doubleValue() > config.maxTokensLimit()) {
        throw BadRequestException.invalid(
            "max_tokens", "max_tokens must be in [1, " + config.maxTokensLimit() + "], got " + v);
      }
      maxTokens = n.intValue();
    }
    double temperature = number(body, "temperature", 0);
    if (!(temperature >= 0 && temperature <= 2)) {
      throw BadRequestException.invalid(
          "temperature", "temperature must be in [0, 2], got " + temperature);
    }
    double topP = number(body, "top_p", 1);
    if (!(topP > 0 && topP <= 1)) {
      throw BadRequestException.invalid("top_p", "top_p must be in (0, 1], got " + topP);
    }
    double seed = number(body, "seed", 0);
    if (seed != Math.rint(seed)) {
      throw BadRequestException.invalid("seed", "seed must be a whole number, got " + seed);
    }
    Object n = body.getValue("n");
    if (n != null && !(n instanceof Number k && k.intValue() == 1 && k.doubleValue() == 1)) {
      throw BadRequestException.invalid("n", "only n=1 is supported, got " + n);
    }
    if (Boolean.TRUE.equals(body.getValue("stream"))) {
      throw BadRequestException.invalid("stream", "streaming is not supported; send stream=false");
    }
    return new CompletionRequest(
        model,
        text,
        maxTokens,
        new SamplingParams(temperature, topP, (long) seed),
        optionalString(body, "verify"));
  }

  private static String optionalString(JsonObject body, String field) {
    Object v = body.getValue(field);
    if (v == null) {
      return null;
    }
    if (!(v instanceof String s)) {
      throw BadRequestException.invalid(field, field + " must be a string, got " + kind(v));
    }
    return s;
  }

  private static double number(JsonObject body, String field, double dflt) {
    Object v = body.getValue(field);
    if (v == null) {
      return dflt;
    }
    if (!(v instanceof Number n)) {
      throw BadRequestException.invalid(field, field + " must be a number, got " + kind(v));
    }
    return n.doubleValue();
  }

  private static String kind(Object v) {
    return switch (v) {
      case String s -> "a string";
      case Number x -> "a number";
      case Boolean b -> "a boolean";
      case JsonArray a -> "an array";
      case JsonObject o -> "an object";
      default -> v.getClass().getSimpleName();
    };
  }
}
