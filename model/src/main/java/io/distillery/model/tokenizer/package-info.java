/**
 * Tokenizers. For now only {@link io.distillery.model.tokenizer.ByteTokenizer}, a byte-level
 * vocabulary for models trained from scratch on the platform; reading Hugging Face {@code
 * tokenizer.json} (BPE, SentencePiece) for real checkpoints is later work.
 */
package io.distillery.model.tokenizer;
