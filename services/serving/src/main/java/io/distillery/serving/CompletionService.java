package io.distillery.serving;

import io.distillery.runtime.kafka.Topics;
import io.distillery.schemas.misfire.Misfire;
import io.distillery.schemas.misfire.MisfireReason;
import io.distillery.serving.MisfirePolicy.Misfiring;
import io.distillery.serving.events.EventSink;
import io.distillery.serving.events.TrafficCounters;
import io.distillery.serving.model.ServedModel;
import io.distillery.serving.rollout.Deployment;
import io.micrometer.core.instrument.Counter;
import io.micrometer.core.instrument.Gauge;
import io.micrometer.core.instrument.MeterRegistry;
import io.micrometer.core.instrument.Timer;
import io.vertx.core.json.JsonArray;
import io.vertx.core.json.JsonObject;
import java.time.Instant;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.UUID;
import java.util.concurrent.ArrayBlockingQueue;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.ThreadPoolExecutor;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.Consumer;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Answers completions, off the event loop: a bounded pool of generation threads with a bounded
 * queue (full: the request is refused), a deadline per request counted from its arrival (past it:
 * 504, counted once as an error), escalation of low-confidence answers to the deployment's teacher
 * within what is left of that deadline, the {@link MisfirePolicy}'s misfires handed to the {@link
 * EventSink}, the per-artefact traffic counts, and the last {@value #REMEMBERED_COMPLETIONS}
 * answers, which {@code /v1/feedback} can flag by id.
 */
final class CompletionService implements AutoCloseable {

  private static final Logger LOG = LoggerFactory.getLogger(CompletionService.class);
  static final int REMEMBERED_COMPLETIONS = 10_000;

  /**
   * What a request gets: the HTTP status, the JSON body, and the outcome tag of the requests
   * metric.
   */
  record Reply(int status, JsonObject body, String outcome) {}

  /** A completion remembered for {@code /v1/feedback}. */
  record Served(
      String deploymentId, String sha256, String prompt, String output, double confidence) {}

  private final ServingConfig config;
  private final EventSink events;
  private final TrafficCounters traffic;
  private final MeterRegistry metrics;
  private final MisfirePolicy policy;
  private final ThreadPoolExecutor generation;
  private final AtomicInteger inFlight = new AtomicInteger();
  private final Counter misfiresDropped;
  private final Counter rejected;
  private final Map<String, Served> recent =
      Collections.synchronizedMap(
          new LinkedHashMap<>(1024, 0.75f, false) {
            @Override
            protected boolean removeEldestEntry(Map.Entry<String, Served> eldest) {
              return size() > REMEMBERED_COMPLETIONS;
            }
          });

  CompletionService(
      ServingConfig config, EventSink events, TrafficCounters traffic, MeterRegistry metrics) {
    this.config = config;
    this.events = events;
    this.traffic = traffic;
    this.metrics = metrics;
    this.policy = new MisfirePolicy(config.confidenceThreshold());
    AtomicInteger threads = new AtomicInteger();
    this.generation =
        new ThreadPoolExecutor(
            config.workers(),
            config.workers(),
            0,
            TimeUnit.MILLISECONDS,
            new ArrayBlockingQueue<>(config.queueSize()),
            r -> {
              Thread t = new Thread(r, "serving-generate-" + threads.incrementAndGet());
              t.setDaemon(true);
              return t;
            },
            new ThreadPoolExecutor.AbortPolicy());
    this.misfiresDropped =
        Counter.builder("distillery.misfires.dropped")
            .description("Misfire events lost because the buffer was full or Kafka unreachable")
            .register(metrics);
    this.rejected =
        Counter.builder("distillery.serving.rejected")
            .description("Requests refused with 503 because the generation queue was full")
            .register(metrics);
    Gauge.builder("distillery.serving.queue", generation, e -> e.getQueue().size())
        .register(metrics);
    Gauge.builder("distillery.serving.inflight", inFlight, AtomicInteger::get).register(metrics);
  }

  /**
   * Queues a request that {@code lease} answers; {@code done} gets the reply on a generation
   * thread, and the lease is closed before. False when the queue is full: nothing was queued, the
   * lease is closed, the caller answers 503.
   */
  boolean submit(
      String deploymentId,
      Deployment.Lease lease,
      CompletionRequest req,
      long receivedNanos,
      Consumer<Reply> done) {
    inFlight.incrementAndGet();
    try {
      generation.execute(
          () -> {
            Reply reply;
            try {
              reply = answer(deploymentId, lease, req, receivedNanos);
            } catch (RuntimeException | Error e) {
              // whatever went wrong, the client gets an answer and the node keeps serving
              LOG.error(
                  "generation failed deployment={} artefact={}",
                  deploymentId,
                  lease.model().sha256(),
                  e);
              traffic.error(deploymentId, lease.model().sha256());
              reply = new Reply(500, ErrorBody.of(500, "generation failed: " + e, null), "error");
            } finally {
              lease.close();
              inFlight.decrementAndGet();
            }
            metrics
                .counter(
                    "distillery.serving.requests",
                    "deployment",
                    deploymentId,
                    "outcome",
                    reply.outcome())
                .increment();
            Timer.builder("distillery.serving.latency")
                .tag("deployment", deploymentId)
                .publishPercentiles(0.5, 0.99)
                .register(metrics)
                .record(System.nanoTime() - receivedNanos, TimeUnit.NANOSECONDS);
            done.accept(reply);
          });
      return true;
    } catch (RejectedExecutionException e) {
      lease.close();
      inFlight.decrementAndGet();
      rejected.increment();
      return false;
    }
  }

  /** Runs on a generation thread. */
  private Reply answer(
      String deploymentId, Deployment.Lease lease, CompletionRequest req, long received) {
    ServedModel model = lease.model();
    String sha = model.sha256();
    long deadline = received + config.requestTimeout().toNanos();
    String id = "cmpl-" + UUID.randomUUID();
    traffic.request(deploymentId, sha);
    ServedModel.Answer answer =
        model.answer(req.prompt(), req.maxTokens(), req.sampling(), deadline);
    if (answer.timedOut()) {
      traffic.error(
          deploymentId,
          sha); // once, as an error: a timeout says nothing about the answer's quality
      return new Reply(
          504,
          ErrorBody.of(
              504,
              "generation did not finish within "
                  + config.requestTimeout().toMillis()
                  + " ms ("
                  + answer.completionTokens()
                  + " tokens generated)",
              null),
          "timeout");
    }
    ServedModel.Answer teacherAnswer = null;
    ServedModel teacher = lease.teacher();
    if (policy.escalates(answer.confidence()) && teacher != null && teacher.tryAcquire()) {
      teacherAnswer = escalate(deploymentId, teacher, req, deadline);
    }
    ServedModel.Answer returned = teacherAnswer != null ? teacherAnswer : answer;
    Misfiring misfiring =
        policy.judge(
            answer.text(),
            answer.confidence(),
            req.verify(),
            teacherAnswer == null ? null : teacherAnswer.text());
    if (misfiring != null) {
      misfire(
          deploymentId,
          sha,
          id,
          req.prompt(),
          answer.text(),
          misfiring.expected(),
          misfiring.reason(),
          answer.confidence());
    }
    recent.put(
        id, new Served(deploymentId, sha, req.prompt(), returned.text(), answer.confidence()));
    int completionTokens = returned.completionTokens();
    JsonObject body =
        new JsonObject()
            .put("id", id)
            .put("object", "text_completion")
            .put("created", System.currentTimeMillis() / 1000)
            .put("model", deploymentId)
            .put(
                "choices",
                new JsonArray()
                    .add(
                        new JsonObject()
                            .put("text", returned.text())
                            .put("index", 0)
                            .put("finish_reason", returned.finishReason())
                            .putNull("logprobs")))
            .put(
                "usage",
                new JsonObject()
                    .put("prompt_tokens", answer.promptTokens())
                    .put("completion_tokens", completionTokens)
                    .put("total_tokens", answer.promptTokens() + completionTokens))
            .put(
                "distillery",
                new JsonObject()
                    .put("artefactSha256", sha)
                    .put("confidence", answer.confidence())
                    .put("escalated", teacherAnswer != null)
                    .put("role", lease.role().name().toLowerCase())
                    .put("node", config.nodeId()));
    return new Reply(200, body, "ok");
  }

  /**
   * The teacher's answer within the request's deadline (the teacher borrowed by the caller is
   * released here), or null when the teacher could not finish in what was left of the request's
   * time: then the student's answer stands.
   */
  private ServedModel.Answer escalate(
      String deploymentId, ServedModel teacher, CompletionRequest req, long deadline) {
    ServedModel.Answer a;
    try {
      a = teacher.answer(req.prompt(), req.maxTokens(), req.sampling(), deadline);
    } finally {
      teacher.release();
    }
    if (a.timedOut()) {
      metrics
          .counter("distillery.serving.escalations.timedout", "deployment", deploymentId)
          .increment();
      return null;
    }
    metrics.counter("distillery.serving.escalations", "deployment", deploymentId).increment();
    return a;
  }

  /** A user's flag of an answer ({@code /v1/feedback}): a USER_FLAG misfire. */
  void flag(Served served, String requestId, String correct) {
    misfire(
        served.deploymentId(),
        served.sha256(),
        requestId,
        served.prompt(),
        served.output(),
        correct,
        MisfireReason.USER_FLAG,
        served.confidence());
  }

  /** A completion this node answered recently, or null. */
  Served remembered(String completionId) {
    return recent.get(completionId);
  }

  private void misfire(
      String deploymentId,
      String sha,
      String requestId,
      String prompt,
      String output,
      String expected,
      MisfireReason reason,
      double confidence) {
    traffic.misfire(deploymentId, sha);
    metrics
        .counter("distillery.misfires", "deployment", deploymentId, "reason", reason.name())
        .increment();
    Misfire m =
        Misfire.newBuilder()
            .setDeploymentId(deploymentId)
            .setNode(config.nodeId())
            .setArtefactSha256(sha)
            .setRequestId(requestId)
            .setPrompt(prompt)
            .setOutput(output)
            .setExpected(expected)
            .setReason(reason)
            .setConfidence(Double.isFinite(confidence) ? confidence : -Double.MAX_VALUE)
            .setTs(Instant.now())
            .build();
    events.offer(Topics.MISFIRES, deploymentId, m, misfiresDropped::increment);
  }

  int queued() {
    return generation.getQueue().size();
  }

  int inFlight() {
    return inFlight.get();
  }

  double misfiresDropped() {
    return misfiresDropped.count();
  }

  /**
   * Stops taking requests and waits for the queued ones (up to the request timeout and a second).
   */
  @Override
  public void close() {
    generation.shutdown();
    try {
      if (!generation.awaitTermination(
          config.requestTimeout().toMillis() + 1000, TimeUnit.MILLISECONDS)) {
        generation.shutdownNow();
      }
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }
}
