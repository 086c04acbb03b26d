/**
 * Layer-streaming execution for models larger than memory: a checkpoint is read lazily from its
 * memory-mapped (sharded) safetensors, one decoder layer at a time is widened to F32 and
 * materialised, the calibration batch's hidden states pass through it, a stage observes or rewrites
 * it, its tensors are written at once (input dtype kept, sharded as Hugging Face shards), and it is
 * freed. See /work/shared/SCALE.md for the arithmetic.
 */
package io.distillery.model.stream;
