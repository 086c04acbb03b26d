package io.distillery.planner;

import io.distillery.schemas.job.JobEvent;
import io.distillery.schemas.job.StageJob;
import io.distillery.schemas.model.ModelRegistered;
import io.distillery.schemas.run.RunState;
import io.distillery.schemas.run.RunStatus;
import java.time.Duration;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.Deque;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.NavigableSet;
import java.util.TreeSet;
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
 * The Streams side of {@link RunPlanner}: keeps each run's {@link RunState} in the {@value #STORE}
 * store (changelogged, so a restarted planner resumes every run), forwards updated states and
 * dispatched jobs, and drives the clock with a wall-clock punctuator. The punctuator visits only
 * runs that are due ({@link RunPlanner#nextDue}: a retry to send or an attempt that may have timed
 * out), kept in an in-memory index rebuilt from the store at start, so a tick costs nothing while
 * thousands of runs wait on their workers.
 *
 * <p>Admission: while {@code maxWaitingJobs} of this task's jobs wait for a worker (dispatched, not
 * yet Started), a new run is stored queued (RUNNING, nothing dispatched) instead of started, and
 * queued runs start in registration order as workers pick jobs up. Later stages of runs already
 * started are always dispatched at once, so a burst of registrations cannot bury the next stage of
 * a run behind a thousand first stages: work in progress stays bounded and every started run moves
 * at the workers' speed.
 */
final class PlannerProcessor implements Processor<String, SpecificRecord, String, SpecificRecord> {

  static final String STORE = "runs";
  private static final Logger LOG = LoggerFactory.getLogger(PlannerProcessor.class);

  private final RunPlanner planner;
  private final Predicate<String> stageExists;
  private final Duration tick;
  private final int maxWaitingJobs;
  private ProcessorContext<String, SpecificRecord> context;
  private KeyValueStore<String, RunState> store;
  private final Map<String, Long> dueAt = new HashMap<>();
  private final NavigableSet<Due> due = new TreeSet<>();

  /** Queued runs of this task, oldest registration first. */
  private final Deque<String> queued = new ArrayDeque<>();

  /** Jobs of this task's runs that wait for a worker. */
  private int waitingJobs;

  private record Due(long at, String runId) implements Comparable<Due> {
    @Override
    public int compareTo(Due o) {
      int c = Long.compare(at, o.at);
      return c != 0 ? c : runId.compareTo(o.runId);
    }
  }

  PlannerProcessor(
      RunPlanner planner, Predicate<String> stageExists, Duration tick, int maxWaitingJobs) {
    if (maxWaitingJobs < 1) {
      throw new IllegalArgumentException(
          "maxWaitingJobs must be at least 1, was " + maxWaitingJobs);
    }
    this.planner = planner;
    this.stageExists = stageExists;
    this.tick = tick;
    this.maxWaitingJobs = maxWaitingJobs;
  }

  @Override
  public void init(ProcessorContext<String, SpecificRecord> context) {
    this.context = context;
    this.store = context.getStateStore(STORE);
    int resumed = 0;
    List<RunState> waiting = new ArrayList<>();
    try (KeyValueIterator<String, RunState> it = store.all()) {
      while (it.hasNext()) {
        RunState state = it.next().value;
        if (state.getStatus() == RunStatus.RUNNING) {
          resumed++;
          schedule(state);
          waitingJobs += RunPlanner.waitingJobs(state);
          if (!RunPlanner.admitted(state)) {
            waiting.add(state);
          }
        }
      }
    }
    waiting.sort(Comparator.comparing(RunState::getCreatedAt).thenComparing(RunState::getRunId));
    waiting.forEach(r -> queued.add(r.getRunId()));
    if (resumed > 0) {
      LOG.info(
          "task={} resumed {} run(s) in progress, {} of them queued",
          context.taskId(),
          resumed,
          queued.size());
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
        boolean admit = queued.isEmpty() && waitingJobs < maxWaitingJobs;
        RunPlanner.Step step = planner.register(reg, stageExists, now, admit);
        if (step.state().getStatus() == RunStatus.REJECTED) {
          LOG.warn("runId={} rejected: {}", reg.getRunId(), step.state().getReason());
        } else if (admit) {
          LOG.info(
              "runId={} started recipe={} stages={}",
              reg.getRunId(),
              step.state().getRecipeName(),
              step.state().getStages().size());
        } else {
          queued.add(reg.getRunId());
          LOG.debug(
              "runId={} queued behind {} run(s); {} job(s) wait for workers",
              reg.getRunId(),
              queued.size() - 1,
              waitingJobs);
        }
        apply(null, step, now);
        admitQueued(now); // after a restart the queue may hold runs a free slot has not started yet
      }
      case JobEvent e -> {
        RunState state = store.get(e.getRunId());
        if (state == null) {
          LOG.warn(
              "runId={} jobId={} event for an unknown run; ignored", e.getRunId(), e.getJobId());
          return;
        }
        apply(state, planner.onEvent(state, e, now), now);
        admitQueued(now);
      }
      default ->
          LOG.warn("unexpected record type {}; ignored", record.value().getClass().getName());
    }
  }

  private void punctuate(long now) {
    while (!due.isEmpty() && due.first().at() <= now) {
      Due next = due.pollFirst();
      dueAt.remove(next.runId());
      RunState state = store.get(next.runId());
      if (state == null) {
        continue;
      }
      RunPlanner.Step step = planner.tick(state, now);
      if (step.changed()) {
        apply(state, step, now);
      } else {
        schedule(state);
      }
      Long again = dueAt.get(next.runId());
      if (again != null
          && again <= now) { // the clock had nothing to do although the run looked due: look later
        reschedule(next.runId(), now + tick.toMillis());
      }
    }
    admitQueued(now);
  }

  /**
   * Starts queued runs, oldest first, while fewer than {@code maxWaitingJobs} jobs wait for
   * workers.
   */
  private void admitQueued(long now) {
    while (waitingJobs < maxWaitingJobs && !queued.isEmpty()) {
      RunState state = store.get(queued.poll());
      if (state != null) {
        LOG.info(
            "runId={} started recipe={} stages={} ({} run(s) still queued)",
            state.getRunId(),
            state.getRecipeName(),
            state.getStages().size(),
            queued.size());
        apply(state, planner.admit(state, now), now);
      }
    }
  }

  /** Indexes the run under the time its clock is next due (none if it waits only on events). */
  private void schedule(RunState state) {
    reschedule(state.getRunId(), planner.nextDue(state));
  }

  private void reschedule(String runId, long at) {
    Long old = dueAt.remove(runId);
    if (old != null) {
      due.remove(new Due(old, runId));
    }
    if (at != Long.MAX_VALUE) {
      dueAt.put(runId, at);
      due.add(new Due(at, runId));
    }
  }

  /**
   * Stores and publishes the step's state and forwards its jobs; {@code before} is the stored state
   * (null if none).
   */
  private void apply(RunState before, RunPlanner.Step step, long now) {
    if (!step.changed()) {
      return;
    }
    RunState state = step.state();
    waitingJobs +=
        RunPlanner.waitingJobs(state) - (before == null ? 0 : RunPlanner.waitingJobs(before));
    for (StageJob job : step.dispatch()) {
      context.forward(new Record<>(job.getRunId(), job, now));
    }
    store.put(state.getRunId(), state);
    schedule(state);
    if (state.getStatus() != RunStatus.RUNNING) {
      LOG.info(
          "runId={} finished status={} verdict={}",
          state.getRunId(),
          state.getStatus(),
          state.getVerdict());
    }
    context.forward(new Record<>(state.getRunId(), state, now));
  }
}
