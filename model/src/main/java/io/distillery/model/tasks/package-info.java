/**
 * Verifiable text tasks with exact answers (addition, copy, reverse, key-value recall, sorting) for
 * training and checking small teacher models: a seeded generator, disjoint splits, JSONL exchange,
 * and exact-match and perplexity scoring of a {@link io.distillery.model.llama.LlamaModel}.
 */
package io.distillery.model.tasks;
