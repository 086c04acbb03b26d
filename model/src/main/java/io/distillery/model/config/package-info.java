/**
 * Hugging Face {@code config.json} for the Llama family (Llama, Mistral, Qwen2), and the tensor
 * names of that layout. {@link io.distillery.model.config.LlamaConfig} is the one place a config is
 * parsed and validated; {@link io.distillery.model.config.LlamaTensorNames} is the one place tensor
 * names are spelled.
 */
package io.distillery.model.config;
