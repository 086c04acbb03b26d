/**
 * Training a small Llama teacher from scratch on the verifiable tasks of {@link
 * io.distillery.model.tasks}: AdamW, warmup plus cosine learning rate, global-norm clipping, and a
 * Hugging Face checkpoint at the end.
 */
package io.distillery.model.train;
