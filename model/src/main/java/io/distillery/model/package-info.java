/**
 * Model core: reading and writing Hugging Face style model directories (safetensors weights, {@code
 * config.json}, tokenizer files) and running Llama-family decoders on DJL.
 *
 * <p>This package holds only the refusals shared by every sub-package: a {@link
 * io.distillery.model.CheckpointException} means the artefact itself is wrong (corrupt, unsafe,
 * unsupported) and retrying the job will not help. Stages map it to a fatal failure before any
 * generic {@link java.io.IOException} handling treats it as retryable.
 *
 * <p>Sub-packages, one per feature: {@code safetensors} (the file format and model directories),
 * {@code config} ({@code config.json} and tensor names), {@code llama} (the forward pass, training
 * hooks and generation), {@code tokenizer} (the byte-level tokenizer).
 */
package io.distillery.model;
