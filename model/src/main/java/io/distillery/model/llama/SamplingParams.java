package io.distillery.model.llama;

/**
 * How {@link LlamaModel#generate} picks the next token.
 *
 * @param temperature 0 for greedy (argmax); otherwise logits are divided by it before softmax
 * @param topP nucleus sampling (Holtzman et al., arXiv 1904.09751): sample only from the smallest
 *     set of most likely tokens whose probability reaches topP; 1 keeps all
 * @param seed seeds the sampler, so a sampled generation is reproducible
 */
public record SamplingParams(double temperature, double topP, long seed) {

  public SamplingParams {
    if (!(temperature >= 0) || Double.isInfinite(temperature)) {
      throw new IllegalArgumentException("temperature must be >= 0 and finite, got " + temperature);
    }
    if (!(topP > 0 && topP <= 1)) {
      throw new IllegalArgumentException("topP must be in (0, 1], got " + topP);
    }
  }

  /** Always the most likely token. */
  public static SamplingParams greedy() {
    return new SamplingParams(0, 1, 0);
  }

  /** Temperature and nucleus sampling with a fixed seed. */
  public static SamplingParams sampled(double temperature, double topP, long seed) {
    return new SamplingParams(temperature, topP, seed);
  }

  public boolean isGreedy() {
    return temperature == 0;
  }
}
