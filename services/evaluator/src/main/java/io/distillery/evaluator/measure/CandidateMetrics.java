package io.distillery.evaluator.measure;

/**
 * What the evaluator measured for one model: quality on the eval prompts, agreement with the
 * reference, latency on this machine and size on disk. NaN means not measured (e.g. {@code
 * misfireExactMatch} without held-out misfires).
 *
 * @param name the recipe node that produced it ({@code reference} / {@code baseline} for those)
 * @param exactMatch fraction of prompts answered exactly (greedy)
 * @param perplexity exp(mean NLL) over answer tokens and the closing eos, prompts conditioned on
 * @param agreement fraction of answer positions where the top-1 next token equals the reference's
 * @param klDivergence mean KL(reference || candidate) over answer positions, nats
 * @param latency prefill and decode timings, batch 1
 * @param weightBytes bytes of the weight files on disk
 * @param parameters number of weights of the (dequantized) model
 * @param misfireExactMatch exact match on the held-out misfires with an expected answer
 * @param examples eval prompts scored
 * @param answerTokens answer positions scored for perplexity, agreement and KL
 */
public record CandidateMetrics(
    String name,
    double exactMatch,
    double perplexity,
    double agreement,
    double klDivergence,
    Latency latency,
    long weightBytes,
    long parameters,
    double misfireExactMatch,
    int examples,
    long answerTokens) {}
