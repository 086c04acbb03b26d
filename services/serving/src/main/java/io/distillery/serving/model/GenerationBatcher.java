package io.distillery.serving.model;

import io.distillery.model.llama.BatchedGeneration;
import io.distillery.model.llama.IntraOpThreads;
import io.distillery.model.llama.LlamaModel;
import io.distillery.model.llama.SamplingParams;
import io.distillery.model.llama.ScoredGeneration;
import java.util.ArrayList;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Decodes the concurrent requests of one model together ({@link BatchedGeneration}): callers hand
 * their prompt to one decoding thread and wait; that thread admits whatever has arrived (their
 * prompts in one forward), then runs one decode step for every sequence in flight, and answers each
 * caller when its sequence ends. With many small ops per token, one forward for {@code n} sequences
 * costs little more than one for a single sequence, so a small model's throughput under concurrency
 * is no longer set by op dispatch. The thread starts with the first request and ends on {@link
 * #close()}.
 */
final class GenerationBatcher implements AutoCloseable {

  private static final Logger LOG = LoggerFactory.getLogger(GenerationBatcher.class);

  /** Sequences decoded together at most; more wait for a row to free. */
  static final int MAX_ROWS = 32;

  private record Pending(
      int[] prompt,
      int maxTokens,
      SamplingParams sampling,
      int stopTokenId,
      long deadlineNanos,
      CompletableFuture<ScoredGeneration.Result> result) {}

  private final LlamaModel model;
  private final String name;
  private final LinkedBlockingQueue<Pending> incoming = new LinkedBlockingQueue<>();
  private Thread thread;
  private boolean closed;

  GenerationBatcher(LlamaModel model, String name) {
    this.model = model;
    this.name = name;
  }

  /** Generates as {@link ScoredGeneration#generate} would, decoded with the other requests. */
  ScoredGeneration.Result generate(
      int[] prompt, int maxTokens, SamplingParams sampling, int stopTokenId, long deadlineNanos) {
    CompletableFuture<ScoredGeneration.Result> result = new CompletableFuture<>();
    synchronized (this) {
      if (closed) {
        throw new IllegalStateException("model " + name + " is closed");
      }
      incoming.add(new Pending(prompt, maxTokens, sampling, stopTokenId, deadlineNanos, result));
      if (thread == null) {
        thread = Thread.ofPlatform().name("serving-decode-" + name).daemon(true).start(this::run);
      }
    }
    try {
      return result.get();
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new IllegalStateException("interrupted while waiting for generation", e);
    } catch (ExecutionException e) {
      if (e.getCause() instanceof RuntimeException r) {
        throw r;
      }
      if (e.getCause() instanceof Error err) {
        throw err;
      }
      throw new IllegalStateException(e.getCause());
    }
  }

  private void run() {
    Map<BatchedGeneration.Sequence, Pending> active = new IdentityHashMap<>();
    int threads = IntraOpThreads.forDecoding(model);
    LOG.debug("decoding thread started model={} intraOpThreads={}", name, threads);
    BatchedGeneration batch = new BatchedGeneration(model);
    try {
      while (true) {
        Pending next = active.isEmpty() ? incoming.poll(1, TimeUnit.SECONDS) : incoming.poll();
        synchronized (this) {
          if (closed) {
            break;
          }
        }
        List<Pending> arrived = new ArrayList<>();
        while (next != null) {
          arrived.add(next);
          next = active.size() + arrived.size() < MAX_ROWS ? incoming.poll() : null;
        }
        if (!arrived.isEmpty()) {
          admit(batch, arrived, active);
        }
        if (!active.isEmpty()) {
          step(batch, active);
        }
      }
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    } finally {
      batch.close();
      IllegalStateException gone = new IllegalStateException("model " + name + " is closed");
      active.values().forEach(p -> p.result().completeExceptionally(gone));
      List<Pending> left = new ArrayList<>();
      incoming.drainTo(left);
      left.forEach(p -> p.result().completeExceptionally(gone));
    }
  }

  /** Starts the requests that arrived, their prompts in one forward. */
  private static void admit(
      BatchedGeneration batch,
      List<Pending> arrived,
      Map<BatchedGeneration.Sequence, Pending> active) {
    List<BatchedGeneration.Request> requests = new ArrayList<>(arrived.size());
    List<Pending> valid = new ArrayList<>(arrived.size());
    for (Pending p : arrived) {
      try {
        requests.add(
            new BatchedGeneration.Request(
                p.prompt(), p.maxTokens(), p.sampling(), p.stopTokenId(), p.deadlineNanos()));
        valid.add(p);
      } catch (RuntimeException e) {
        p.result().completeExceptionally(e); // this request alone
      }
    }
    List<BatchedGeneration.Sequence> started;
    try {
      started = batch.admit(requests);
    } catch (RuntimeException | Error e) {
      // these prompts' forward failed; the sequences already in the batch are untouched
      valid.forEach(p -> p.result().completeExceptionally(e));
      return;
    }
    for (int i = 0; i < started.size(); i++) {
      BatchedGeneration.Sequence s = started.get(i);
      Pending p = valid.get(i);
      if (s.done()) {
        p.result().complete(s.result());
      } else {
        active.put(s, p);
      }
    }
  }

  private void step(BatchedGeneration batch, Map<BatchedGeneration.Sequence, Pending> active) {
    try {
      for (BatchedGeneration.Sequence s : batch.step()) {
        active.remove(s).result().complete(s.result());
      }
    } catch (RuntimeException | Error e) {
      // the step failed for every row (the batch has dropped them): each caller gets the failure
      LOG.error("decode step failed model={} rows={}", name, active.size(), e);
      active.values().forEach(p -> p.result().completeExceptionally(e));
      active.clear();
    }
  }

  /** Ends the decoding thread; requests not answered yet fail. */
  @Override
  public void close() {
    Thread t;
    synchronized (this) {
      closed = true;
      t = thread;
    }
    if (t != null) {
      t.interrupt();
      try {
        t.join(TimeUnit.SECONDS.toMillis(30));
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
      }
    }
  }
}
