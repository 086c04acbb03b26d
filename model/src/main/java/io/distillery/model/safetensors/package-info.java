/**
 * The safetensors file format and Hugging Face model directories, in plain Java (no DJL).
 *
 * <p>Format (https://github.com/huggingface/safetensors, "Format" section): an 8-byte little-endian
 * unsigned header length {@code N}; {@code N} bytes of UTF-8 JSON, an object mapping each tensor
 * name to {@code {"dtype", "shape", "data_offsets": [begin, end]}} plus an optional {@code
 * "__metadata__"} object of string values; then the data buffer. Offsets are relative to the start
 * of the data buffer, tensors are little-endian and row-major, and the ranges must tile the buffer
 * with no holes and no overlaps.
 *
 * <p>{@link io.distillery.model.safetensors.SafetensorsFile} memory-maps a file through the FFM API
 * (files over 2 GiB work) and validates the header before anything else trusts it; {@link
 * io.distillery.model.safetensors.SafetensorsWriter} writes the same format; {@link
 * io.distillery.model.safetensors.Checkpoint} opens a model directory (one file or shards listed in
 * {@code model.safetensors.index.json}) and refuses pickled checkpoints.
 */
package io.distillery.model.safetensors;
