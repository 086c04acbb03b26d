package io.distillery.feedback;

/**
 * A misfire as it goes into the re-distillation dataset, kept until no open window can hold it any
 * more.
 */
record MisfireRow(
    String deploymentId,
    long ts,
    String promptHash,
    String prompt,
    String output,
    String expected,
    String reason,
    String artefactSha256) {}
