package io.distillery.serving.rollout;

import io.distillery.runtime.artefact.FileArtefactStore;
import io.distillery.runtime.kafka.Topics;
import io.distillery.schemas.common.ArtefactRef;
import io.distillery.schemas.deployment.DeploymentActive;
import io.distillery.schemas.deployment.DeploymentEvent;
import io.distillery.schemas.deployment.DeploymentRequested;
import io.distillery.schemas.deployment.RolledBack;
import io.distillery.serving.events.EventSink;
import io.distillery.serving.model.ServedModel;
import io.distillery.stage.ContentHash;
import io.micrometer.core.instrument.Counter;
import io.micrometer.core.instrument.MeterRegistry;
import java.io.IOException;
import java.nio.file.Path;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Collections;
import java.util.Comparator;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.function.Predicate;
import java.util.function.Supplier;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The deployments a serving node hosts, as rollout events make them: loads the artefact a
 * DeploymentRequested names and swaps it in as stable or as a canary, announcing DeploymentActive;
 * drops the canary on RolledBack; and keeps the node's teachers, one loaded model per teacher
 * artefact (keyed by its content hash), shared by the deployments that name it and retired when
 * none does. Changes are serialised (one at a time); requests read the routing without locks (see
 * {@link Deployment}).
 */
public final class Deployments implements AutoCloseable {

  private static final Logger LOG = LoggerFactory.getLogger(Deployments.class);

  private final String nodeId;
  private final Predicate<String> hosts;
  private final FileArtefactStore store;
  private final EventSink events;
  private final MeterRegistry metrics;
  private final Counter eventsDropped;
  private final Supplier<String> url;
  private final Map<String, Deployment> deployments = new ConcurrentHashMap<>();
  private final Map<String, ServedModel> teachers = new ConcurrentHashMap<>();

  /**
   * @param store where artefact URIs resolve; null for a node without one (then only {@link
   *     #serveLocal} serves)
   * @param url the node's base URL, announced in DeploymentActive
   */
  public Deployments(
      String nodeId,
      Predicate<String> hosts,
      FileArtefactStore store,
      EventSink events,
      MeterRegistry metrics,
      Counter eventsDropped,
      Supplier<String> url) {
    this.nodeId = nodeId;
    this.hosts = hosts;
    this.store = store;
    this.events = events;
    this.metrics = metrics;
    this.eventsDropped = eventsDropped;
    this.url = url;
  }

  /**
   * Applies one event of {@code distillery.deployments} for a deployment this node hosts: loads the
   * requested artefact (blocking: call it off the request path), swaps it in as stable or as a
   * canary, and announces DeploymentActive; or drops the canary on RolledBack. Events for other
   * deployments are ignored.
   *
   * @throws IOException if the artefact cannot be resolved or loaded; what the node serves is
   *     unchanged then
   */
  public synchronized void apply(DeploymentEvent event) throws IOException {
    String id = event.getDeploymentId();
    if (!hosts.test(id)) {
      return;
    }
    try {
      switch (event.getPayload()) {
        case DeploymentRequested req -> deploy(id, event.getRunId(), req);
        case RolledBack rb -> rollBack(id, rb);
        case DeploymentActive ignored -> {}
        default ->
            throw new IllegalArgumentException(
                "unknown deployment payload " + event.getPayload().getClass());
      }
    } catch (IOException | RuntimeException e) {
      metrics.counter("distillery.serving.rollout.failures", "deployment", id).increment();
      throw e;
    } finally {
      retireUnusedTeachers();
    }
  }

  private void deploy(String id, String runId, DeploymentRequested req) throws IOException {
    ArtefactRef ref = req.getArtefact();
    int percent = req.getCanaryPercent();
    if (percent < 0 || percent > 100) {
      throw new IllegalArgumentException(
          "deployment " + id + ": canaryPercent must be in [0, 100], got " + percent);
    }
    ServedModel teacher = teacher(req.getTeacher());
    Deployment current = deployments.get(id);
    Deployment.Routing routing = current == null ? null : current.routing();
    ServedModel model = loaded(routing, ref.getSha256());
    long start = System.nanoTime();
    if (model == null) {
      model = ServedModel.load(resolve(ref.getUri()), ref.getSha256(), ref.getUri());
    }
    Deployment d = deployments.computeIfAbsent(id, Deployment::new);
    boolean canary =
        percent < 100 && routing != null && !routing.stable().sha256().equals(ref.getSha256());
    if (canary) {
      d.canary(model, percent, teacher);
    } else {
      d.promote(model, teacher);
    }
    metrics
        .counter("distillery.serving.swaps", "deployment", id, "role", canary ? "canary" : "stable")
        .increment();
    LOG.info(
        "deployment={} artefact={} role={} canaryPercent={} loadMs={} node={}",
        id,
        ref.getSha256(),
        canary ? "canary" : "stable",
        percent,
        (System.nanoTime() - start) / 1_000_000,
        nodeId);
    DeploymentEvent active =
        DeploymentEvent.newBuilder()
            .setDeploymentId(id)
            .setRunId(runId)
            .setTs(Instant.now())
            .setPayload(
                DeploymentActive.newBuilder()
                    .setNode(nodeId)
                    .setUrl(url.get())
                    .setArtefactSha256(ref.getSha256())
                    .setCanaryPercent(canary ? percent : 100)
                    .build())
            .build();
    events.offer(
        Topics.DEPLOYMENTS,
        id,
        active,
        () -> {
          eventsDropped.increment();
          LOG.warn("DeploymentActive not published deployment={} artefact={}", id, ref.getSha256());
        });
  }

  private void rollBack(String id, RolledBack rb) throws IOException {
    Deployment d = deployments.get(id);
    if (d == null) {
      return;
    }
    boolean dropped = d.dropCanary();
    ArtefactRef restored = rb.getRestored();
    Deployment.Routing r = d.routing();
    if (restored != null && r != null && !r.stable().sha256().equals(restored.getSha256())) {
      ServedModel model =
          ServedModel.load(resolve(restored.getUri()), restored.getSha256(), restored.getUri());
      d.promote(model, r.teacher());
    }
    LOG.info(
        "deployment={} rolled back canaryDropped={} stable={} reason={}",
        id,
        dropped,
        d.routing() == null ? null : d.routing().stable().sha256(),
        rb.getReason());
  }

  /**
   * Serves a checkpoint or package directory as the stable artefact of {@code deploymentId},
   * without Kafka (the bench and local use); the artefact sha is the directory's content hash.
   */
  public synchronized String serveLocal(String deploymentId, Path dir, Path teacherDir)
      throws IOException {
    String sha = ContentHash.of(dir);
    ServedModel model = ServedModel.load(dir, sha, dir.toUri().toString());
    try {
      ServedModel teacher =
          teacherDir == null
              ? null
              : teacher(ContentHash.of(teacherDir), teacherDir.toUri().toString(), teacherDir);
      deployments.computeIfAbsent(deploymentId, Deployment::new).promote(model, teacher);
    } catch (IOException | RuntimeException e) {
      model.retire();
      throw e;
    } finally {
      retireUnusedTeachers();
    }
    return sha;
  }

  /** Serves already loaded models as the stable artefact and teacher of {@code deploymentId}. */
  public synchronized void serve(String deploymentId, ServedModel model, ServedModel teacher) {
    deployments.computeIfAbsent(deploymentId, Deployment::new).promote(model, teacher);
  }

  private static ServedModel loaded(Deployment.Routing r, String sha) {
    if (r == null) {
      return null;
    }
    if (r.stable().sha256().equals(sha)) {
      return r.stable();
    }
    return r.canary() != null && r.canary().sha256().equals(sha) ? r.canary() : null;
  }

  /** The teacher a rollout names, or null. */
  private ServedModel teacher(ArtefactRef ref) throws IOException {
    return ref == null ? null : teacher(ref.getSha256(), ref.getUri(), null);
  }

  /**
   * The teacher with this content hash, loaded once (from {@code dir}, else by resolving {@code
   * uri}) and shared by every deployment that names the same artefact, whether by a rollout or
   * {@link #serveLocal}. Called with this object's lock held, as is {@link #retireUnusedTeachers}.
   */
  private ServedModel teacher(String sha, String uri, Path dir) throws IOException {
    ServedModel t = teachers.get(sha);
    if (t == null) {
      t = ServedModel.load(dir != null ? dir : resolve(uri), sha, uri);
      teachers.put(sha, t);
      LOG.info("teacher loaded sha256={} uri={}", sha, uri);
    }
    return t;
  }

  /**
   * Drops the teachers no deployment routes to any more (a rollout named another one) and retires
   * them: the weights are freed when the last escalation using them ends.
   */
  private void retireUnusedTeachers() {
    Set<ServedModel> used = Collections.newSetFromMap(new IdentityHashMap<>());
    for (Deployment d : deployments.values()) {
      Deployment.Routing r = d.routing();
      if (r != null && r.teacher() != null) {
        used.add(r.teacher());
      }
    }
    teachers
        .values()
        .removeIf(
            t -> {
              if (used.contains(t)) {
                return false;
              }
              t.retire();
              LOG.info(
                  "teacher retired sha256={} uri={} (no deployment names it)", t.sha256(), t.uri());
              return true;
            });
  }

  private Path resolve(String uri) throws IOException {
    if (store == null) {
      throw new IOException("this node has no artefact store configured; cannot resolve " + uri);
    }
    return store.resolve(uri);
  }

  /** A deployment by id, or null. */
  public Deployment get(String deploymentId) {
    return deployments.get(deploymentId);
  }

  /** The routing of a deployment, or null when it is not loaded. */
  public Deployment.Routing routing(String deploymentId) {
    Deployment d = deployments.get(deploymentId);
    return d == null ? null : d.routing();
  }

  /** The deployments that serve something, by id. */
  public List<Deployment> served() {
    return deployments.values().stream()
        .filter(d -> d.routing() != null)
        .sorted(Comparator.comparing(Deployment::id))
        .toList();
  }

  /** Ids of the deployments that serve something, sorted. */
  public List<String> servedIds() {
    return served().stream().map(Deployment::id).toList();
  }

  /** Retires every model and teacher (node shutdown); in-flight requests still finish. */
  @Override
  public synchronized void close() {
    new ArrayList<>(deployments.values()).forEach(Deployment::close);
    teachers.values().forEach(ServedModel::retire);
    teachers.clear();
  }
}
