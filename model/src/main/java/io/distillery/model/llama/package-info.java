/**
 * A Llama-family decoder on DJL NDArrays (PyTorch engine, CPU): the forward pass used by
 * calibration, evaluation, distillation (under autograd) and CPU serving, with a KV cache for
 * incremental decoding, hooks for compression stages, and generation.
 *
 * <p>Weights are always float32 NDArrays: half-precision checkpoints are widened in Java before an
 * NDArray is created, because a BF16 NDArray aborts the JVM on this engine (shared/DJL.md).
 */
package io.distillery.model.llama;
