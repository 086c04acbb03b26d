package io.distillery.runtime.worker;

import io.distillery.schemas.common.ArtefactRef;
import io.distillery.schemas.job.Completed;
import io.distillery.schemas.job.Failed;
import io.distillery.schemas.job.JobEvent;
import io.distillery.schemas.job.Progress;
import io.distillery.schemas.job.StageJob;
import io.distillery.schemas.job.Started;
import java.time.Instant;
import java.util.List;
import java.util.Map;

/** Builds the {@link JobEvent}s of one job attempt. */
final class JobEvents {

  private final StageJob job;
  private final String worker;

  JobEvents(StageJob job, String worker) {
    this.job = job;
    this.worker = worker;
  }

  JobEvent started(String note) {
    return event(Started.newBuilder().setNote(note).build());
  }

  JobEvent progress(double percent, String message, Map<String, Double> metrics) {
    return event(
        Progress.newBuilder()
            .setPercent(Math.max(0, Math.min(100, percent)))
            .setMessage(message)
            .setMetrics(Map.copyOf(metrics))
            .build());
  }

  JobEvent completed(List<ArtefactRef> outputs, Map<String, Double> metrics, boolean cached) {
    return event(
        Completed.newBuilder()
            .setOutputs(outputs)
            .setMetrics(Map.copyOf(metrics))
            .setCached(cached)
            .build());
  }

  JobEvent failed(String reason, boolean retryable) {
    return event(Failed.newBuilder().setReason(reason).setRetryable(retryable).build());
  }

  /** The stage judged the candidate unfit: the run ends REJECTED with this reason. */
  JobEvent rejected(String reason) {
    return event(
        Failed.newBuilder().setReason(reason).setRetryable(false).setRejected(true).build());
  }

  private JobEvent event(Object payload) {
    return JobEvent.newBuilder()
        .setRunId(job.getRunId())
        .setJobId(job.getJobId())
        .setAttempt(job.getAttempt())
        .setStage(job.getStage())
        .setNode(job.getNode())
        .setWorker(worker)
        .setTs(Instant.now())
        .setPayload(payload)
        .build();
  }
}
