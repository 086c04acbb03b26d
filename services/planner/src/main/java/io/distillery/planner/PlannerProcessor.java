package io.distillery.planner;

import io.distillery.schemas.job.JobEvent;
import io.distillery.schemas.job.StageJob;
import io.distillery.schemas.model.ModelRegistered;
import io.distillery.schemas.run.RunState;
import io.distillery.schemas.run.RunStatus;
import java.time.Duration;
import java.util.LinkedHashSet;
import java.util.Set;
import java.util.function.Predicate;
import org.apache.avro.specific.SpecificRecord;
import org.apache.kafka.streams.processor.PunctuationType;
import org.apache.kafka.streams.processor.api.Processor;
import org.apache.kafka.streams.processor.api.ProcessorContext;
import org.apache.kafka.streams.processor.api.Record;
import org.apache.kafka.streams.state.KeyValueIterator;
import org.apache.kafka.streams.state.KeyValueStore;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The Streams side of {@link RunPlanner}: keeps each run's {@link RunState} in the {@value #STORE} store (changelogged,
 * so a restarted planner resumes every run), forwards updated states and dispatched jobs, and drives the clock with a
 * wall-clock punctuator over the runs still in progress.
 */
final class PlannerProcessor implements Processor<String, SpecificRecord, String, SpecificRecord> {

  static final String STORE = "runs";
  private static final Logger LOG = LoggerFactory.getLogger(PlannerProcessor.class);

  private final RunPlanner planner;
  private final Predicate<String> stageExists;
  private final Duration tick;
  private ProcessorContext<String, SpecificRecord> context;
  private KeyValueStore<String, RunState> store;
  private final Set<String> active = new LinkedHashSet<>();

  PlannerProcessor(RunPlanner planner, Predicate<String> stageExists, Duration tick) {
    this.planner = planner;
    this.stageExists = stageExists;
    this.tick = tick;
  }

  @Override
  public void init(ProcessorContext<String, SpecificRecord> context) {
    this.context = context;
    this.store = context.getStateStore(STORE);
    try (KeyValueIterator<String, RunState> it = store.all()) {
      it.forEachRemaining(kv -> {
        if (kv.value.getStatus() == RunStatus.RUNNING) {
          active.add(kv.key);
        }
      });
    }
    if (!active.isEmpty()) {
      LOG.info("task={} resumed {} run(s) in progress", context.taskId(), active.size());
    }
    context.schedule(tick, PunctuationType.WALL_CLOCK_TIME, this::punctuate);
  }

  @Override
  public void process(Record<String, SpecificRecord> record) {
    long now = System.currentTimeMillis();
    switch (record.value()) {
      case ModelRegistered reg -> {
        if (store.get(reg.getRunId()) != null) {
          LOG.info("runId={} already registered; ignored", reg.getRunId());
          return;
        }
        RunPlanner.Step step = planner.register(reg, stageExists, now);
        if (step.state().getStatus() == RunStatus.REJECTED) {
          LOG.warn("runId={} rejected: {}", reg.getRunId(), step.state().getReason());
        } else {
          LOG.info("runId={} started recipe={} stages={}", reg.getRunId(), step.state().getRecipeName(),
              step.state().getStages().size());
        }
        apply(step, now);
      }
      case JobEvent e -> {
        RunState state = store.get(e.getRunId());
        if (state == null) {
          LOG.warn("runId={} jobId={} event for an unknown run; ignored", e.getRunId(), e.getJobId());
          return;
        }
        apply(planner.onEvent(state, e, now), now);
      }
      default -> LOG.warn("unexpected record type {}; ignored", record.value().getClass().getName());
    }
  }

  private void punctuate(long now) {
    for (String runId : Set.copyOf(active)) {
      RunState state = store.get(runId);
      if (state == null) {
        active.remove(runId);
        continue;
      }
      apply(planner.tick(state, now), now);
    }
  }

  private void apply(RunPlanner.Step step, long now) {
    if (!step.changed()) {
      return;
    }
    RunState state = step.state();
    for (StageJob job : step.dispatch()) {
      context.forward(new Record<>(job.getRunId(), job, now));
    }
    store.put(state.getRunId(), state);
    if (state.getStatus() == RunStatus.RUNNING) {
      active.add(state.getRunId());
    } else {
      active.remove(state.getRunId());
      LOG.info("runId={} finished status={} verdict={}", state.getRunId(), state.getStatus(), state.getVerdict());
    }
    context.forward(new Record<>(state.getRunId(), state, now));
  }
}
