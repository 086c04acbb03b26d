package io.distillery.feedback;

import io.distillery.runtime.kafka.DeadLetters;
import io.distillery.runtime.kafka.Topics;
import io.distillery.schemas.common.ArtefactRef;
import io.distillery.schemas.deployment.DeploymentEvent;
import io.distillery.schemas.deployment.DeploymentRequested;
import io.distillery.schemas.dlq.DeadLetter;
import io.distillery.schemas.misfire.Misfire;
import io.distillery.schemas.model.ModelRegistered;
import io.distillery.schemas.serving.ServingTraffic;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.function.UnaryOperator;
import org.apache.avro.specific.SpecificRecord;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.serialization.Serializer;
import org.apache.kafka.streams.processor.PunctuationType;
import org.apache.kafka.streams.processor.api.Processor;
import org.apache.kafka.streams.processor.api.ProcessorContext;
import org.apache.kafka.streams.processor.api.Record;
import org.apache.kafka.streams.processor.api.RecordMetadata;
import org.apache.kafka.streams.state.KeyValueIterator;
import org.apache.kafka.streams.state.KeyValueStore;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The feedback loop as one processor over deployments, serving traffic and misfires (all keyed by
 * deploymentId, so one task sees everything of a deployment). It owns five changelogged stores: the
 * last full DeploymentRequested per deployment (its lineage), the hopping windows, the misfire rows
 * a window may still need, the per-deployment trigger state, and the incidents already acted on (by
 * run id). Windows are judged once event time (or, for quiet deployments, the wall clock less
 * {@code idleClose}) passes their end plus the grace; a judged window is never judged again and
 * events that only fall into judged windows are dropped as late, so neither a restart nor a replay
 * of the misfire topic counts twice or fires twice.
 */
final class MisfireWindowProcessor
    implements Processor<String, SpecificRecord, String, SpecificRecord> {

  static final String DEPLOYMENTS = "feedback-deployments";
  static final String WINDOWS = "feedback-windows";
  static final String ROWS = "feedback-misfire-rows";
  static final String TRIGGERS = "feedback-triggers";
  static final String INCIDENTS = "feedback-incidents";
  static final char SEP = '\u0001';

  private static final Logger LOG = LoggerFactory.getLogger(MisfireWindowProcessor.class);

  private final TriggerPolicy policy;
  private final MisfireDataset dataset;
  private final RedistillRuns runs;
  private final FeedbackMetrics metrics;
  private final Serializer<Misfire> misfireBytes;
  private final String consumer;
  private final Duration tick;

  private ProcessorContext<String, SpecificRecord> context;
  private KeyValueStore<String, DeploymentEvent> deployments;
  private KeyValueStore<String, MisfireWindow> windows;
  private KeyValueStore<String, MisfireRow> rows;
  private KeyValueStore<String, TriggerState> triggers;
  private KeyValueStore<String, Trigger> incidents;

  MisfireWindowProcessor(
      TriggerPolicy policy,
      MisfireDataset dataset,
      RedistillRuns runs,
      FeedbackMetrics metrics,
      Serializer<Misfire> misfireBytes,
      String consumer,
      Duration tick) {
    this.policy = policy;
    this.dataset = dataset;
    this.runs = runs;
    this.metrics = metrics;
    this.misfireBytes = misfireBytes;
    this.consumer = consumer;
    this.tick = tick;
  }

  static String windowKey(String deploymentId, long start) {
    return deploymentId + SEP + pad(start);
  }

  static String rowKey(String deploymentId, long ts, String promptHash) {
    return deploymentId + SEP + pad(ts) + SEP + promptHash;
  }

  static String prefix(String deploymentId) {
    return deploymentId + SEP;
  }

  private static String pad(long v) {
    return String.format("%019d", Math.max(0, v));
  }

  @Override
  public void init(ProcessorContext<String, SpecificRecord> context) {
    this.context = context;
    this.deployments = context.getStateStore(DEPLOYMENTS);
    this.windows = context.getStateStore(WINDOWS);
    this.rows = context.getStateStore(ROWS);
    this.triggers = context.getStateStore(TRIGGERS);
    this.incidents = context.getStateStore(INCIDENTS);
    context.schedule(tick, PunctuationType.WALL_CLOCK_TIME, this::closeDueWindows);
  }

  @Override
  public void process(Record<String, SpecificRecord> record) {
    switch (record.value()) {
      case DeploymentEvent e -> onDeployment(e);
      case Misfire m -> onMisfire(record.key(), m);
      case ServingTraffic t -> onTraffic(t);
      default ->
          LOG.warn("unexpected record type {}; ignored", record.value().getClass().getName());
    }
  }

  private void onDeployment(DeploymentEvent e) {
    if (e.getPayload() instanceof DeploymentRequested r && r.getCanaryPercent() == 100) {
      deployments.put(e.getDeploymentId(), e);
      LOG.info(
          "deploymentId={} runId={} artefact={} lineage={}",
          e.getDeploymentId(),
          e.getRunId(),
          r.getArtefact().getUri(),
          r.getLabels());
    }
  }

  private void onMisfire(String key, Misfire m) {
    String dep =
        m.getDeploymentId() == null || m.getDeploymentId().isBlank() ? key : m.getDeploymentId();
    if (m.getPrompt() == null || m.getPrompt().isBlank()) {
      reject(
          key,
          m,
          "empty-prompt",
          "misfire " + m.getRequestId() + " of deployment " + dep + " has an empty prompt");
      return;
    }
    if (dep == null || deployments.get(dep) == null) {
      reject(
          key,
          m,
          "unknown-deployment",
          "misfire "
              + m.getRequestId()
              + " names unknown deployment '"
              + dep
              + "': no DeploymentRequested with canaryPercent 100 was seen on "
              + Topics.DEPLOYMENTS);
      return;
    }
    long ts = m.getTs().toEpochMilli();
    // 64 bits of the prompt's sha256 identify it within a deployment's windows (kept per window, so
    // kept short)
    String hash = MisfireDataset.hash(m.getPrompt()).substring(0, 16);
    TriggerState state = stateOf(dep).seen(ts);
    boolean[] counted = {false};
    boolean open =
        updateOpenWindows(
            dep,
            ts,
            state,
            w -> {
              counted[0] |= !w.contains(hash);
              return w.withPrompt(hash);
            });
    triggers.put(dep, state);
    if (!open) {
      metrics.dropped("late");
      LOG.debug(
          "deploymentId={} misfire ts={} falls only into judged windows; dropped as late", dep, ts);
      return;
    }
    if (counted[0]) {
      rows.put(
          rowKey(dep, ts, hash),
          new MisfireRow(
              dep,
              ts,
              hash,
              m.getPrompt(),
              m.getOutput(),
              m.getExpected(),
              m.getReason().name(),
              m.getArtefactSha256()));
      metrics.misfire("counted");
    } else {
      metrics.misfire("duplicate");
    }
    judge(dep, Long.MIN_VALUE);
  }

  /**
   * Applies {@code update} to every window of {@code dep} that holds {@code ts} and is not judged
   * yet (creating it empty); false when there is none, i.e. the event is late.
   */
  private boolean updateOpenWindows(
      String dep, long ts, TriggerState state, UnaryOperator<MisfireWindow> update) {
    boolean open = false;
    for (long start : policy.windowStarts(ts)) {
      long end = policy.end(start);
      if (end <= state.closedUpTo()) {
        continue;
      }
      open = true;
      String k = windowKey(dep, start);
      MisfireWindow w = windows.get(k);
      windows.put(k, update.apply(w == null ? MisfireWindow.empty(dep, start, end) : w));
    }
    return open;
  }

  private void onTraffic(ServingTraffic t) {
    String dep = t.getDeploymentId();
    if (deployments.get(dep) == null) {
      metrics.dropped("traffic-unknown-deployment");
      LOG.debug("deploymentId={} traffic for an unknown deployment; ignored", dep);
      return;
    }
    long ts = t.getTs().toEpochMilli();
    TriggerState state = stateOf(dep).seen(ts);
    boolean open = updateOpenWindows(dep, ts, state, w -> w.withRequests(t.getRequests()));
    triggers.put(dep, state);
    if (!open) {
      metrics.dropped("traffic-late");
    }
    judge(dep, Long.MIN_VALUE);
  }

  private void closeDueWindows(long wallClock) {
    List<String> deps = new ArrayList<>();
    try (KeyValueIterator<String, TriggerState> it = triggers.all()) {
      it.forEachRemaining(kv -> deps.add(kv.key));
    }
    long idle = wallClock - policy.idleClose().toMillis();
    deps.forEach(dep -> judge(dep, idle));
  }

  private TriggerState stateOf(String dep) {
    TriggerState s = triggers.get(dep);
    return s == null ? TriggerState.initial(dep) : s;
  }

  /**
   * Judges, in order, every window of {@code dep} that is due by the later of its event time and
   * {@code wallClock} (Long.MIN_VALUE on the record path: event time alone), then drops what no
   * window needs any more.
   */
  private void judge(String dep, long wallClock) {
    TriggerState state = stateOf(dep);
    long now = Math.max(state.maxEventTs(), wallClock);
    List<MisfireWindow> due = new ArrayList<>();
    List<String> expired = new ArrayList<>();
    try (KeyValueIterator<String, MisfireWindow> it =
        windows.prefixScan(prefix(dep), Serdes.String().serializer())) {
      while (it.hasNext()) {
        var kv = it.next();
        MisfireWindow w = kv.value;
        if (w.end() > state.closedUpTo() && policy.due(w, now)) {
          due.add(w);
        } else if (w.end() <= state.closedUpTo() && w.end() + policy.window().toMillis() <= now) {
          expired.add(kv.key); // judged, and kept one window length for the /misfires view
        }
      }
    }
    if (due.isEmpty() && expired.isEmpty()) {
      return;
    }
    for (MisfireWindow w : due) {
      state = decide(dep, state, w).closed(w.end());
    }
    triggers.put(dep, state);
    expired.forEach(windows::delete);
    if (state.closedUpTo() <= 0) {
      return;
    }
    // Rows older than the earliest start of a window still open are needed by no window.
    long oldestOpenStart =
        state.closedUpTo() - policy.window().toMillis() + policy.advance().toMillis();
    List<String> old = new ArrayList<>();
    try (KeyValueIterator<String, MisfireRow> it =
        rows.range(rowKey(dep, 0, ""), rowKey(dep, oldestOpenStart, ""))) {
      it.forEachRemaining(kv -> old.add(kv.key));
    }
    old.forEach(rows::delete);
  }

  private TriggerState decide(String dep, TriggerState state, MisfireWindow w) {
    TriggerPolicy.Decision d = policy.decide(state, w);
    switch (d) {
      case QUIET -> {
        return state;
      }
      case COOL_DOWN -> {
        metrics.trigger("cool-down");
        LOG.info(
            "deploymentId={} window={}..{} misfires={} rate={} over the thresholds, same incident (cooling down"
                + " until {})",
            dep,
            w.start(),
            w.end(),
            w.misfires(),
            w.rate(),
            policy.coolDownUntil(state));
        return state.coolingDown();
      }
      case DAILY_CAP -> {
        metrics.trigger("daily-cap");
        LOG.warn(
            "deploymentId={} window={}..{} misfires={} rate={} over the thresholds, but the deployment used its"
                + " {} runs today",
            dep,
            w.start(),
            w.end(),
            w.misfires(),
            w.rate(),
            policy.maxRunsPerDay());
        return state.capped();
      }
      case FIRE -> {
        return fire(dep, state, w);
      }
    }
    throw new IllegalStateException("unreachable: " + d);
  }

  private TriggerState fire(String dep, TriggerState state, MisfireWindow w) {
    String runId = TriggerPolicy.runId(dep, w.start());
    long day = TriggerPolicy.day(w.end());
    Trigger known = incidents.get(runId);
    if (known != null) {
      metrics.trigger("already-fired");
      LOG.info(
          "deploymentId={} runId={} incident already acted on ({}); not fired again",
          dep,
          runId,
          known.outcome());
      return state;
    }
    long now = context.currentSystemTimeMs();
    DeploymentEvent deployment = deployments.get(dep);
    Trigger t;
    try {
      Path recipe = runs.recipeOf(deployment);
      runs.teacherUri(deployment);
      ArtefactRef data = dataset.write(rowsOf(w));
      ModelRegistered reg = runs.build(runId, deployment, w, data, recipe, now);
      context.forward(new Record<>(reg.getModelId(), reg, now));
      t =
          new Trigger(
              runId,
              dep,
              Trigger.Outcome.FIRED,
              w.start(),
              w.end(),
              w.misfires(),
              w.requests(),
              w.rate(),
              data.getUri(),
              null,
              now);
      metrics.trigger("fired");
      LOG.info(
          "deploymentId={} runId={} re-distillation started: window={}..{} misfires={} requests={} rate={}"
              + " dataset={} recipe={}",
          dep,
          runId,
          w.start(),
          w.end(),
          w.misfires(),
          w.requests(),
          w.rate(),
          data.getUri(),
          recipe);
    } catch (RedistillException | IOException e) {
      t =
          new Trigger(
              runId,
              dep,
              Trigger.Outcome.FAILED,
              w.start(),
              w.end(),
              w.misfires(),
              w.requests(),
              w.rate(),
              null,
              e.getMessage(),
              now);
      metrics.trigger("failed");
      LOG.error(
          "deploymentId={} runId={} incident over the thresholds cannot start a re-distillation run: {}",
          dep,
          runId,
          e.getMessage());
    }
    incidents.put(runId, t);
    return state.with(t, day);
  }

  /** The window's misfires, one per prompt (its first occurrence in the window), in event order. */
  private List<MisfireRow> rowsOf(MisfireWindow w) {
    List<MisfireRow> out = new ArrayList<>();
    Set<String> seen = new HashSet<>();
    String dep = w.deploymentId();
    try (KeyValueIterator<String, MisfireRow> it =
        rows.range(rowKey(dep, w.start(), ""), rowKey(dep, w.end(), ""))) {
      it.forEachRemaining(
          kv -> {
            if (seen.add(kv.value.promptHash())) {
              out.add(kv.value);
            }
          });
    }
    return out;
  }

  private void reject(String key, Misfire m, String reason, String message) {
    metrics.dropped(reason);
    LOG.warn("reason={} {}; sent to {}", reason, message, Topics.dlq(Topics.MISFIRES));
    RecordMetadata meta = context.recordMetadata().orElse(null);
    String topic = meta == null ? Topics.MISFIRES : meta.topic();
    DeadLetter letter =
        DeadLetters.letter(
            topic,
            meta == null ? -1 : meta.partition(),
            meta == null ? -1 : meta.offset(),
            key == null ? null : key.getBytes(StandardCharsets.UTF_8),
            misfireBytes.serialize(topic, m),
            new IllegalArgumentException(message),
            consumer);
    context.forward(new Record<>(key, letter, context.currentSystemTimeMs()));
  }
}
