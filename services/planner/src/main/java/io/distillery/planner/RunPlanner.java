package io.distillery.planner;

import io.distillery.runtime.kafka.Topics;
import io.distillery.runtime.recipe.Recipe;
import io.distillery.runtime.recipe.RecipeException;
import io.distillery.runtime.recipe.RecipeParser;
import io.distillery.schemas.common.ArtefactRef;
import io.distillery.schemas.job.Completed;
import io.distillery.schemas.job.Failed;
import io.distillery.schemas.job.JobEvent;
import io.distillery.schemas.job.Progress;
import io.distillery.schemas.job.StageInput;
import io.distillery.schemas.job.StageJob;
import io.distillery.schemas.job.Started;
import io.distillery.schemas.model.ModelRegistered;
import io.distillery.schemas.run.RunState;
import io.distillery.schemas.run.RunStatus;
import io.distillery.schemas.run.StageState;
import io.distillery.schemas.run.StageStatus;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.Predicate;

/**
 * The run state machine, free of Kafka: given a run's state and one input (a registration, a job
 * event, or the clock), it returns the next state and the jobs to dispatch. A node is dispatched
 * when every node in its {@code after} completed (fan-out and fan-in fall out of that); retryable
 * failures and silent attempts are retried with doubling backoff up to the node's {@code retries};
 * events of stale attempts and repeated Completed events are ignored, so replays after a crash
 * change nothing.
 */
public final class RunPlanner {

  /** The next state (null if nothing changed) and the jobs to dispatch. */
  public record Step(RunState state, List<StageJob> dispatch) {
    static Step none() {
      return new Step(null, List.of());
    }

    public boolean changed() {
      return state != null;
    }
  }

  private final Duration initialBackoff;
  private final Duration maxBackoff;

  /**
   * Parsed recipes by their JSON; shared by the processors of every stream thread, hence
   * synchronized.
   */
  private final Map<String, Recipe> recipes =
      Collections.synchronizedMap(
          new LinkedHashMap<>(64, 0.75f, true) {
            @Override
            protected boolean removeEldestEntry(Map.Entry<String, Recipe> eldest) {
              return size() > 512;
            }
          });

  public RunPlanner(Duration initialBackoff, Duration maxBackoff) {
    this.initialBackoff = initialBackoff;
    this.maxBackoff = maxBackoff;
  }

  /**
   * Starts a run: validates the recipe, then dispatches its roots; an invalid recipe ends the run
   * as REJECTED.
   */
  public Step register(ModelRegistered reg, Predicate<String> stageExists, long now) {
    return register(reg, stageExists, now, true);
  }

  /**
   * Starts a run as {@link #register(ModelRegistered, Predicate, long)} does, except that with
   * {@code admit} false a valid run is stored RUNNING with every node WAITING and nothing
   * dispatched: it is queued until {@link #admit}.
   */
  public Step register(
      ModelRegistered reg, Predicate<String> stageExists, long now, boolean admit) {
    ArtefactRef model =
        ArtefactRef.newBuilder()
            .setUri(reg.getUri())
            .setSha256(reg.getSha256())
            .setBytes(reg.getBytes())
            .setFormat("hf-model")
            .build();
    RunState.Builder rs =
        RunState.newBuilder()
            .setRunId(reg.getRunId())
            .setModelId(reg.getModelId())
            .setModel(model)
            .setInputs(reg.getInputs())
            .setLabels(reg.getLabels())
            .setGates(reg.getGates())
            .setCreatedAt(Instant.ofEpochMilli(now))
            .setUpdatedAt(Instant.ofEpochMilli(now));
    Recipe recipe;
    try {
      recipe = RecipeParser.parse(reg.getRecipe(), stageExists);
    } catch (RecipeException e) {
      return new Step(
          rs.setRecipeName(reg.getRecipeRef() == null ? "?" : reg.getRecipeRef())
              .setRecipe(reg.getRecipe())
              .setStatus(RunStatus.REJECTED)
              .setReason(e.getMessage())
              .setVerdict("REJECTED: recipe is invalid")
              .setStages(List.of())
              .build(),
          List.of());
    }
    String json = RecipeParser.toJson(recipe);
    recipes.put(json, recipe);
    List<StageState> stages = new ArrayList<>();
    for (Recipe.Node n : recipe.nodes().values()) {
      stages.add(
          StageState.newBuilder()
              .setNode(n.name())
              .setStage(n.stage())
              .setAfter(n.after())
              .setStatus(StageStatus.WAITING)
              .build());
    }
    RunState state =
        rs.setRecipeName(recipe.name())
            .setRecipe(json)
            .setStatus(RunStatus.RUNNING)
            .setStages(stages)
            .build();
    List<StageJob> jobs = new ArrayList<>();
    if (admit) {
      dispatchReady(state, recipe, now, jobs);
    } else {
      for (StageState s : state.getStages()) {
        if (s.getAfter().isEmpty()) {
          s.setMessage("queued: the run starts when fewer jobs wait for workers");
        }
      }
    }
    return new Step(state, jobs);
  }

  /**
   * Dispatches the roots of a run that {@link #register} queued; nothing for a run already admitted
   * or finished.
   */
  public Step admit(RunState current, long now) {
    if (current.getStatus() != RunStatus.RUNNING || admitted(current)) {
      return Step.none();
    }
    RunState state = RunState.newBuilder(current).build();
    List<StageJob> jobs = new ArrayList<>();
    dispatchReady(state, recipe(state), now, jobs);
    state.setUpdatedAt(Instant.ofEpochMilli(now));
    return new Step(state, jobs);
  }

  /**
   * Whether any node of the run was ever dispatched: a RUNNING run with none dispatched yet is
   * queued.
   */
  public static boolean admitted(RunState state) {
    return state.getStages().stream().anyMatch(s -> s.getAttempt() > 0);
  }

  /** The run's jobs that wait for a worker: dispatched to their topic, not yet Started. */
  public static int waitingJobs(RunState state) {
    int n = 0;
    for (StageState s : state.getStages()) {
      if (s.getStatus() == StageStatus.DISPATCHED) {
        n++;
      }
    }
    return n;
  }

  /** Applies one job event of the run. */
  public Step onEvent(RunState current, JobEvent e, long now) {
    if (current.getStatus() != RunStatus.RUNNING) {
      return Step.none();
    }
    RunState state =
        RunState.newBuilder(current).build(); // deep copy: the caller's value stays untouched
    StageState s = find(state, e.getNode());
    if (s == null
        || e.getAttempt() != s.getAttempt()
        || s.getStatus() == StageStatus.COMPLETED
        || s.getStatus() == StageStatus.FAILED
        || s.getStatus() == StageStatus.SKIPPED
        || s.getStatus() == StageStatus.REJECTED) {
      return Step.none(); // unknown node, stale attempt, or a duplicate after the node finished
    }
    Recipe recipe = recipe(state);
    List<StageJob> jobs = new ArrayList<>();
    s.setLastEventAt(now);
    s.setWorker(e.getWorker());
    switch (e.getPayload()) {
      case Started st -> {
        s.setStatus(StageStatus.RUNNING);
        s.setStartedAt(now);
        s.setMessage("started on " + e.getWorker());
      }
      case Progress p -> {
        s.setStatus(StageStatus.RUNNING);
        s.setPercent(p.getPercent());
        s.setMessage(p.getMessage());
        if (!p.getMetrics().isEmpty()) {
          s.setMetrics(p.getMetrics());
        }
      }
      case Completed c -> {
        s.setStatus(StageStatus.COMPLETED);
        s.setPercent(100.0);
        s.setOutputs(c.getOutputs());
        s.setMetrics(c.getMetrics());
        s.setCached(c.getCached());
        s.setCompletedAt(now);
        s.setCompletions(s.getCompletions() + 1);
        s.setMessage(c.getCached() ? "reused cached output" : "completed");
        dispatchReady(state, recipe, now, jobs);
        finishIfDone(state);
      }
      case Failed f when f.getRejected() -> reject(state, s, f.getReason(), now);
      case Failed f -> fail(state, s, recipe, f.getReason(), f.getRetryable(), now);
      default -> {
        return Step.none();
      }
    }
    state.setUpdatedAt(Instant.ofEpochMilli(now));
    return new Step(state, jobs);
  }

  /**
   * The clock: dispatches retries that are due and fails attempts that went silent past their
   * timeout.
   */
  public Step tick(RunState current, long now) {
    if (current.getStatus() != RunStatus.RUNNING) {
      return Step.none();
    }
    RunState state = null;
    List<StageJob> jobs = new ArrayList<>();
    Recipe recipe = recipe(current);
    for (StageState s0 : current.getStages()) {
      boolean due =
          s0.getStatus() == StageStatus.RETRY_WAIT
              && s0.getRetryAt() != null
              && s0.getRetryAt() <= now;
      Long last = s0.getLastEventAt() != null ? s0.getLastEventAt() : s0.getDispatchedAt();
      long timeout = recipe.nodes().get(s0.getNode()).timeout().toMillis();
      boolean silent =
          (s0.getStatus() == StageStatus.DISPATCHED || s0.getStatus() == StageStatus.RUNNING)
              && last != null
              && now - last > timeout;
      if (!due && !silent) {
        continue;
      }
      if (state == null) {
        state = RunState.newBuilder(current).build();
      }
      StageState s = find(state, s0.getNode());
      if (due) {
        jobs.add(dispatch(state, s, recipe.nodes().get(s.getNode()), now));
      } else {
        fail(
            state,
            s,
            recipe,
            "no event from the worker for "
                + timeout
                + " ms (attempt "
                + s.getAttempt()
                + " timed out)",
            true,
            now);
        if (s.getStatus() == StageStatus.RETRY_WAIT && s.getRetryAt() <= now) {
          jobs.add(dispatch(state, s, recipe.nodes().get(s.getNode()), now));
        }
      }
    }
    if (state == null) {
      return Step.none();
    }
    state.setUpdatedAt(Instant.ofEpochMilli(now));
    return new Step(state, jobs);
  }

  /**
   * The earliest time at which {@link #tick} can change this run: its first due retry or attempt
   * timeout, or {@link Long#MAX_VALUE} when it waits on nothing but events. The clock visits only
   * runs that are due.
   */
  public long nextDue(RunState state) {
    if (state.getStatus() != RunStatus.RUNNING) {
      return Long.MAX_VALUE;
    }
    Recipe recipe = recipe(state);
    long due = Long.MAX_VALUE;
    for (StageState s : state.getStages()) {
      if (s.getStatus() == StageStatus.RETRY_WAIT && s.getRetryAt() != null) {
        due = Math.min(due, s.getRetryAt());
      } else if (s.getStatus() == StageStatus.DISPATCHED || s.getStatus() == StageStatus.RUNNING) {
        Long last = s.getLastEventAt() != null ? s.getLastEventAt() : s.getDispatchedAt();
        if (last != null) { // tick fails the attempt once now - last > timeout
          long timeout = recipe.nodes().get(s.getNode()).timeout().toMillis();
          due =
              Math.min(
                  due, timeout >= Long.MAX_VALUE - 1 - last ? Long.MAX_VALUE : last + timeout + 1);
        }
      }
    }
    return due;
  }

  private void fail(
      RunState state, StageState s, Recipe recipe, String reason, boolean retryable, long now) {
    Recipe.Node node = recipe.nodes().get(s.getNode());
    s.setReason(reason);
    if (retryable && s.getAttempt() <= node.retries()) {
      long backoff =
          Math.min(
              maxBackoff.toMillis(), initialBackoff.toMillis() << Math.min(20, s.getAttempt() - 1));
      s.setStatus(StageStatus.RETRY_WAIT);
      s.setRetryAt(now + backoff);
      s.setMessage(
          "attempt " + s.getAttempt() + " failed: " + reason + "; retrying in " + backoff + " ms");
      return;
    }
    s.setStatus(StageStatus.FAILED);
    s.setMessage(reason);
    s.setCompletedAt(now);
    skipPending(state, s.getNode(), "failed");
    state.setStatus(RunStatus.FAILED);
    state.setReason(
        "node '"
            + s.getNode()
            + "' ("
            + s.getStage()
            + ") failed after "
            + s.getAttempt()
            + " attempt(s): "
            + reason);
    state.setVerdict("FAILED");
  }

  /** A stage's verdict against the candidate: the run ends REJECTED and nothing downstream runs. */
  private static void reject(RunState state, StageState s, String reason, long now) {
    s.setStatus(StageStatus.REJECTED);
    s.setReason(reason);
    s.setMessage("rejected: " + reason);
    s.setCompletedAt(now);
    skipPending(state, s.getNode(), "rejected");
    state.setStatus(RunStatus.REJECTED);
    state.setReason(
        "node '" + s.getNode() + "' (" + s.getStage() + ") rejected the candidate: " + reason);
    state.setVerdict("REJECTED: " + reason);
  }

  private static void skipPending(RunState state, String node, String why) {
    for (StageState other : state.getStages()) {
      if (other.getStatus() == StageStatus.WAITING || other.getStatus() == StageStatus.RETRY_WAIT) {
        other.setStatus(StageStatus.SKIPPED);
        other.setMessage("skipped: node '" + node + "' " + why);
      }
    }
  }

  private static void finishIfDone(RunState state) {
    boolean all = state.getStages().stream().allMatch(x -> x.getStatus() == StageStatus.COMPLETED);
    if (all) {
      state.setStatus(RunStatus.SUCCEEDED);
      long cached = state.getStages().stream().filter(StageState::getCached).count();
      state.setVerdict(
          "SUCCEEDED: "
              + state.getStages().size()
              + " stage(s) completed"
              + (cached > 0 ? ", " + cached + " from cache" : ""));
    }
  }

  private void dispatchReady(RunState state, Recipe recipe, long now, List<StageJob> jobs) {
    for (StageState s : state.getStages()) {
      if (s.getStatus() != StageStatus.WAITING) {
        continue;
      }
      boolean ready =
          s.getAfter().stream().allMatch(a -> find(state, a).getStatus() == StageStatus.COMPLETED);
      if (ready) {
        jobs.add(dispatch(state, s, recipe.nodes().get(s.getNode()), now));
      }
    }
  }

  private static StageJob dispatch(RunState state, StageState s, Recipe.Node node, long now) {
    s.setAttempt(s.getAttempt() + 1);
    s.setStatus(StageStatus.DISPATCHED);
    s.setDispatchedAt(now);
    s.setLastEventAt(null);
    s.setRetryAt(null);
    s.setPercent(0.0);
    s.setMessage("dispatched attempt " + s.getAttempt() + " to " + Topics.jobs(s.getStage()));
    List<StageInput> inputs = new ArrayList<>();
    if (!state.getInputs().isEmpty()) {
      inputs.add(
          StageInput.newBuilder()
              .setNode("$run")
              .setStage("input")
              .setArtefacts(state.getInputs())
              .setMetrics(Map.of())
              .build());
    }
    for (String a : node.after()) {
      StageState up = find(state, a);
      inputs.add(
          StageInput.newBuilder()
              .setNode(a)
              .setStage(up.getStage())
              .setArtefacts(up.getOutputs())
              .setMetrics(up.getMetrics())
              .build());
    }
    return StageJob.newBuilder()
        .setRunId(state.getRunId())
        .setJobId(state.getRunId() + "/" + node.name())
        .setAttempt(s.getAttempt())
        .setStage(node.stage())
        .setNode(node.name())
        .setParams(RecipeParser.canonical(node.params()))
        .setModel(state.getModel())
        .setInputs(inputs)
        .setGates(state.getGates())
        .setLabels(state.getLabels())
        .setTimeoutMs(node.timeout().toMillis())
        .setDispatchedAt(Instant.ofEpochMilli(now))
        .build();
  }

  private Recipe recipe(RunState state) {
    return recipes.computeIfAbsent(
        state.getRecipe(),
        json -> {
          try {
            return RecipeParser.parse(json, stage -> true);
          } catch (RecipeException e) {
            throw new IllegalStateException(
                "stored recipe of run " + state.getRunId() + " no longer parses", e);
          }
        });
  }

  private static StageState find(RunState state, String node) {
    for (StageState s : state.getStages()) {
      if (s.getNode().equals(node)) {
        return s;
      }
    }
    return null;
  }
}
