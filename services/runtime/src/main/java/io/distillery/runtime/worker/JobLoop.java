package io.distillery.runtime.worker;

import com.fasterxml.jackson.databind.ObjectMapper;
import io.distillery.runtime.artefact.ArtefactStore;
import io.distillery.runtime.kafka.DeadLetters;
import io.distillery.runtime.kafka.Topics;
import io.distillery.runtime.recipe.RecipeParser;
import io.distillery.runtime.serde.AvroSerde;
import io.distillery.runtime.serde.SchemaRegistryException;
import io.distillery.schemas.common.ArtefactRef;
import io.distillery.schemas.job.Completed;
import io.distillery.schemas.job.Failed;
import io.distillery.schemas.job.JobEvent;
import io.distillery.schemas.job.StageInput;
import io.distillery.schemas.job.StageJob;
import io.distillery.stage.ProgressSink;
import io.distillery.stage.Stage;
import io.distillery.stage.StageContext;
import io.distillery.stage.StageDescriptor;
import io.distillery.stage.StageException;
import io.distillery.stage.StageParams;
import io.distillery.stage.StageResult;
import io.distillery.stage.UnusableInput;
import io.micrometer.core.instrument.MeterRegistry;
import io.micrometer.core.instrument.Timer;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CancellationException;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicReference;
import java.util.concurrent.locks.LockSupport;
import org.apache.kafka.clients.consumer.Consumer;
import org.apache.kafka.clients.consumer.ConsumerRebalanceListener;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.Producer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.KafkaException;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.WakeupException;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The consume-run-report loop of one stage, on its own thread (a KafkaConsumer wants exactly one).
 * One record at a time: decode it (or dead-letter it), skip a jobId+attempt already finished, reuse
 * a cached identical result, else run the stage on a separate thread while the consumer stays
 * paused but keeps polling, so a job may take hours without tripping {@code max.poll.interval.ms}.
 * The offset is committed only after the result event is acknowledged.
 */
final class JobLoop implements Runnable {

  private static final Logger LOG = LoggerFactory.getLogger(JobLoop.class);
  private static final ObjectMapper JSON = new ObjectMapper();
  private static final Duration POLL = Duration.ofMillis(100);

  private final StageDescriptor descriptor;
  private final Stage<Record> stage;
  private final WorkerConfig config;
  private final Consumer<String, byte[]> consumer;
  private final Producer<String, byte[]> producer;
  private final AvroSerde<StageJob> jobSerde;
  private final AvroSerde<JobEvent> eventSerde;
  private final DeadLetters deadLetters;
  private final ArtefactStore store;
  private final MeterRegistry metrics;
  private final ExecutorService executor;
  private final String topic;

  private volatile boolean running = true;
  private volatile long stopDeadlineNanos = Long.MAX_VALUE;
  private volatile boolean closed;
  private final AtomicReference<String> currentJob = new AtomicReference<>();
  private boolean jobActive;

  JobLoop(
      StageDescriptor descriptor,
      WorkerConfig config,
      Consumer<String, byte[]> consumer,
      Producer<String, byte[]> producer,
      AvroSerde<StageJob> jobSerde,
      AvroSerde<JobEvent> eventSerde,
      DeadLetters deadLetters,
      ArtefactStore store,
      MeterRegistry metrics) {
    this.descriptor = descriptor;
    this.stage = descriptor.instantiate();
    if (stage instanceof HostServices.Aware aware) {
      aware.attach(new HostServices(config.kafka(), store, config.workerId()));
    }
    this.config = config;
    this.consumer = consumer;
    this.producer = producer;
    this.jobSerde = jobSerde;
    this.eventSerde = eventSerde;
    this.deadLetters = deadLetters;
    this.store = store;
    this.metrics = metrics;
    this.topic = Topics.jobs(descriptor.name());
    this.executor =
        Executors.newSingleThreadExecutor(
            r -> {
              Thread t = new Thread(r, "stage-" + descriptor.name() + "-" + config.workerId());
              t.setDaemon(true);
              return t;
            });
  }

  /** The job running now, if any ("jobId#attempt"). */
  String currentJob() {
    return currentJob.get();
  }

  /**
   * Stop consuming; a running job gets {@code grace} to finish, then is abandoned (uncommitted, so
   * redelivered).
   */
  void stop(Duration grace) {
    stopDeadlineNanos = System.nanoTime() + grace.toNanos();
    running = false;
    consumer.wakeup();
  }

  @Override
  public void run() {
    try {
      consumer.subscribe(
          List.of(topic),
          new ConsumerRebalanceListener() {
            @Override
            public void onPartitionsRevoked(Collection<TopicPartition> partitions) {}

            @Override
            public void onPartitionsAssigned(Collection<TopicPartition> partitions) {
              if (jobActive) {
                consumer.pause(partitions); // keep the one-job-at-a-time promise across a rebalance
              }
            }
          });
      while (running) {
        ConsumerRecords<String, byte[]> records;
        try {
          records = consumer.poll(POLL);
        } catch (WakeupException e) {
          continue;
        }
        for (ConsumerRecord<String, byte[]> rec : records) {
          if (!running) {
            break;
          }
          try {
            handle(rec);
          } catch (RuntimeException e) {
            // Infrastructure trouble (registry or broker unreachable): keep the record, try it
            // again shortly.
            LOG.error(
                "stage={} offset={}:{} could not be processed, retrying: {}",
                descriptor.name(),
                rec.partition(),
                rec.offset(),
                e.toString(),
                e);
            consumer.seek(new TopicPartition(rec.topic(), rec.partition()), rec.offset());
            LockSupport.parkNanos(Duration.ofSeconds(1).toNanos());
            break;
          }
        }
      }
    } catch (RuntimeException e) {
      LOG.error(
          "stage={} worker={} job loop died: {}",
          descriptor.name(),
          config.workerId(),
          e.toString(),
          e);
    } finally {
      closed = true;
      executor.shutdownNow();
      try {
        consumer.close(Duration.ofSeconds(5));
      } catch (RuntimeException e) {
        LOG.warn("stage={} consumer close failed: {}", descriptor.name(), e.toString());
      }
    }
  }

  private void handle(ConsumerRecord<String, byte[]> rec) {
    StageJob job;
    try {
      job = jobSerde.deserialize(rec.topic(), rec.value());
      if (job == null) {
        throw new IllegalArgumentException("empty record (null value)");
      }
      if (!descriptor.name().equals(job.getStage())) {
        throw new IllegalArgumentException(
            "job for stage '" + job.getStage() + "' on topic " + rec.topic());
      }
    } catch (RuntimeException e) {
      if (e.getCause() instanceof SchemaRegistryException sre && sre.isTransient()) {
        throw e; // the registry is down, the record may be fine: retried by the loop, not
        // dead-lettered
      }
      LOG.warn(
          "stage={} offset={}:{} undecodable job sent to {}: {}",
          descriptor.name(),
          rec.partition(),
          rec.offset(),
          Topics.dlq(rec.topic()),
          e.getMessage());
      deadLetters.send(rec.topic(), rec.partition(), rec.offset(), rec.key(), rec.value(), e);
      metrics.counter("distillery_dead_letters_total", "stage", descriptor.name()).increment();
      commit(rec);
      return;
    }
    String tag = job.getJobId() + "#" + job.getAttempt();
    if (store.isDone(job.getJobId(), job.getAttempt())) {
      LOG.info(
          "stage={} runId={} jobId={} attempt={} already finished; skipped",
          descriptor.name(),
          job.getRunId(),
          job.getJobId(),
          job.getAttempt());
      commit(rec);
      return;
    }
    JobEvents events = new JobEvents(job, config.workerId());
    Record params;
    String canonicalParams;
    try {
      params =
          StageParams.bind(
              descriptor.name(), job.getParams(), descriptor.params().asSubclass(Record.class));
      canonicalParams =
          RecipeParser.canonical(JSON.readTree(job.getParams().isBlank() ? "{}" : job.getParams()));
    } catch (StageException.Fatal | IOException e) {
      finish(rec, job, events.failed(e.getMessage(), false), "failed");
      return;
    }
    String cacheKey = StageCacheKey.of(job, canonicalParams);
    if (descriptor.cacheable()) {
      var hit = store.cached(cacheKey);
      if (hit.isPresent()) {
        LOG.info(
            "stage={} runId={} jobId={} reused cached output",
            descriptor.name(),
            job.getRunId(),
            job.getJobId());
        finish(
            rec, job, events.completed(hit.get().outputs(), hit.get().metrics(), true), "cached");
        return;
      }
    }
    currentJob.set(tag);
    send(
        events.started(config.workerId()),
        false); // ordered before the result by the same producer and key
    LOG.info(
        "stage={} runId={} jobId={} attempt={} started",
        descriptor.name(),
        job.getRunId(),
        job.getJobId(),
        job.getAttempt());
    Timer.Sample timer = Timer.start(metrics);
    ProgressPublisher progress = new ProgressPublisher(events);
    Future<JobEvent> future =
        executor.submit(() -> execute(job, params, events, progress, cacheKey));
    jobActive = true;
    consumer.pause(consumer.assignment());
    try {
      JobEvent result = await(future, progress);
      if (result == null) {
        LOG.warn(
            "stage={} runId={} jobId={} attempt={} abandoned at shutdown; it will be redelivered",
            descriptor.name(),
            job.getRunId(),
            job.getJobId(),
            job.getAttempt());
        return;
      }
      String outcome = result.getPayload() instanceof Completed ? "completed" : "failed";
      timer.stop(
          metrics.timer("distillery_job_seconds", "stage", descriptor.name(), "outcome", outcome));
      finish(rec, job, result, outcome);
    } finally {
      jobActive = false;
      currentJob.set(null);
      if (running) {
        consumer.resume(consumer.paused());
      }
    }
  }

  /**
   * Polls (paused) while the stage runs; heartbeats progress; returns null if the job was
   * abandoned.
   */
  private JobEvent await(Future<JobEvent> future, ProgressPublisher progress) {
    while (true) {
      try {
        return future.get(POLL.toMillis(), TimeUnit.MILLISECONDS);
      } catch (TimeoutException e) {
        // still running
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        future.cancel(true);
        return null;
      } catch (ExecutionException e) {
        throw new IllegalStateException("stage execution wrapper failed", e.getCause());
      } catch (CancellationException e) {
        return null;
      }
      if (!running && System.nanoTime() > stopDeadlineNanos) {
        future.cancel(true);
        return null;
      }
      try {
        consumer.poll(Duration.ZERO); // paused: returns nothing, keeps the group membership alive
      } catch (WakeupException e) {
        // stop() woke us; the loop above decides
      }
      progress.heartbeat(config.heartbeat());
    }
  }

  /** The context of one job: what the host resolved, and this worker's memory budget. */
  static <P extends Record> StageContext<P> context(
      WorkerConfig config,
      StageJob job,
      P params,
      Path model,
      List<StageContext.Input> inputs,
      Path scratch,
      Path workDir,
      ProgressSink sink) {
    return new StageContext<>(
        job, params, model, inputs, scratch, workDir, sink, config.memoryBudgetBytes());
  }

  private JobEvent execute(
      StageJob job, Record params, JobEvents events, ProgressPublisher progress, String cacheKey)
      throws InterruptedException {
    Path scratch = null;
    try {
      scratch = store.newScratch();
      Path model = job.getModel().getUri().isBlank() ? null : store.resolve(job.getModel());
      List<StageContext.Input> inputs = new ArrayList<>();
      for (StageInput in : job.getInputs()) {
        List<StageContext.Artefact> arts = new ArrayList<>();
        for (ArtefactRef r : in.getArtefacts()) {
          arts.add(new StageContext.Artefact(r, store.resolve(r)));
        }
        inputs.add(new StageContext.Input(in.getNode(), in.getStage(), arts, in.getMetrics()));
      }
      StageContext<Record> ctx =
          context(
              config,
              job,
              params,
              model,
              inputs,
              scratch,
              store.workDir(job.getJobId()),
              progress::publish);
      StageResult result = stage.run(ctx);
      List<ArtefactRef> outputs = new ArrayList<>();
      for (StageResult.Output o : result.outputs()) {
        LineageManifest.writeIfCheckpoint(
            o.path(), o.format(), descriptor.name(), job, result.metrics());
        outputs.add(store.put(o.path(), o.format(), false));
      }
      if (descriptor.cacheable()) {
        store.remember(cacheKey, new ArtefactStore.CachedResult(outputs, result.metrics()));
      }
      return events.completed(outputs, result.metrics(), false);
    } catch (StageException e) {
      LOG.warn(
          "stage={} runId={} jobId={} failed ({}): {}",
          descriptor.name(),
          job.getRunId(),
          job.getJobId(),
          e.retryable() ? "retryable" : "fatal",
          e.getMessage());
      if (e instanceof StageException.Rejected) {
        return events.rejected(e.getMessage());
      }
      return events.failed(e.getMessage(), e.retryable());
    } catch (IOException | UncheckedIOException e) {
      Throwable io = e instanceof UncheckedIOException u ? u.getCause() : e;
      if (io instanceof UnusableInput) {
        return events.failed(
            io.getMessage(), false); // a refused URI or a corrupt checkpoint stays so on retry
      }
      return events.failed("I/O error: " + e.getMessage(), true);
    } catch (InterruptedException e) {
      throw e;
    } catch (RuntimeException | Error e) {
      LOG.error(
          "stage={} runId={} jobId={} crashed",
          descriptor.name(),
          job.getRunId(),
          job.getJobId(),
          e);
      return events.failed(e.getClass().getSimpleName() + ": " + e.getMessage(), false);
    } finally {
      if (scratch != null) {
        try {
          store.discardScratch(scratch); // outputs were moved into the store; the rest is litter
        } catch (IOException e) {
          LOG.warn(
              "stage={} cannot remove scratch {}: {}", descriptor.name(), scratch, e.toString());
        }
      }
    }
  }

  /**
   * Writes the result event (acknowledged), marks the attempt done, then commits the job's offset.
   */
  private void finish(
      ConsumerRecord<String, byte[]> rec, StageJob job, JobEvent result, String outcome) {
    if (closed || !send(result, true)) {
      return;
    }
    try {
      store.markDone(job.getJobId(), job.getAttempt());
    } catch (IOException e) {
      LOG.warn(
          "stage={} jobId={} cannot record completion marker: {}",
          descriptor.name(),
          job.getJobId(),
          e.toString());
    }
    metrics
        .counter("distillery_jobs_total", "stage", descriptor.name(), "outcome", outcome)
        .increment();
    if (result.getPayload() instanceof Failed f) {
      LOG.warn(
          "stage={} runId={} jobId={} attempt={} {} (retryable={} rejected={}): {}",
          descriptor.name(),
          job.getRunId(),
          job.getJobId(),
          job.getAttempt(),
          outcome,
          f.getRetryable(),
          f.getRejected(),
          f.getReason());
    } else {
      LOG.info(
          "stage={} runId={} jobId={} attempt={} {}",
          descriptor.name(),
          job.getRunId(),
          job.getJobId(),
          job.getAttempt(),
          outcome);
    }
    commit(rec);
  }

  /**
   * Commits after the result is acknowledged. Asynchronous: a lost commit only means a redelivery,
   * which the done marker skips; the consumer's close commits nothing further, so nothing is
   * skipped that was not finished.
   */
  private void commit(ConsumerRecord<String, byte[]> rec) {
    try {
      consumer.commitAsync(
          Map.of(
              new TopicPartition(rec.topic(), rec.partition()),
              new OffsetAndMetadata(rec.offset() + 1)),
          (offsets, e) -> {
            if (e != null) {
              LOG.warn(
                  "stage={} commit of {}:{} failed: {}",
                  descriptor.name(),
                  rec.partition(),
                  rec.offset(),
                  e.toString());
            }
          });
    } catch (KafkaException e) {
      LOG.warn(
          "stage={} commit of {}:{} failed: {}",
          descriptor.name(),
          rec.partition(),
          rec.offset(),
          e.toString());
    }
  }

  private boolean send(JobEvent event, boolean await) {
    if (closed) {
      return false;
    }
    var f =
        producer.send(
            new ProducerRecord<>(
                Topics.JOB_EVENTS,
                event.getRunId(),
                eventSerde.serialize(Topics.JOB_EVENTS, event)));
    if (!await) {
      return true;
    }
    try {
      f.get(30, TimeUnit.SECONDS);
      return true;
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      return false;
    } catch (ExecutionException | TimeoutException e) {
      throw new IllegalStateException(
          "cannot write job event for " + event.getJobId() + ": " + e, e);
    }
  }

  /**
   * Throttles progress from the stage thread; the loop thread re-sends the last one as a heartbeat.
   */
  private final class ProgressPublisher {
    private final JobEvents events;
    private long lastSentNanos;
    private JobEvent last;

    ProgressPublisher(JobEvents events) {
      this.events = events;
      this.last = events.progress(0, "started", Map.of());
      this.lastSentNanos = System.nanoTime();
    }

    synchronized void publish(double percent, String message, Map<String, Double> metrics) {
      last = events.progress(percent, message, metrics);
      long now = System.nanoTime();
      if (now - lastSentNanos >= config.progressInterval().toNanos() || percent >= 100) {
        lastSentNanos = now;
        send(last, false);
      }
    }

    synchronized void heartbeat(Duration every) {
      long now = System.nanoTime();
      if (now - lastSentNanos >= every.toNanos()) {
        lastSentNanos = now;
        send(last, false);
      }
    }
  }
}
