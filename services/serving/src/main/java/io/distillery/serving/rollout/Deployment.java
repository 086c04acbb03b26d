package io.distillery.serving.rollout;

import io.distillery.serving.model.ServedModel;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;

/**
 * What one deployment serves on this node: a stable artefact, optionally a canary taking a share of
 * the requests, and the teacher that low-confidence answers escalate to. The routing is one
 * immutable {@link Routing} swapped atomically: a request leases a model from the routing it saw,
 * so a swap never fails a request, and the replaced model is freed when its last request ends (see
 * {@link ServedModel}).
 */
public final class Deployment {

  /** An immutable routing table; {@code canary} may be null (then {@code canaryPercent} is 0). */
  public record Routing(
      ServedModel stable, ServedModel canary, int canaryPercent, ServedModel teacher) {}

  /** Which of the deployment's artefacts answered. */
  public enum Role {
    STABLE,
    CANARY
  }

  /** A borrowed model; close it when the request ends. */
  public record Lease(ServedModel model, Role role, ServedModel teacher) implements AutoCloseable {
    @Override
    public void close() {
      model.release();
    }
  }

  private final String id;
  private final AtomicReference<Routing> routing = new AtomicReference<>();
  private final AtomicLong requests = new AtomicLong();

  public Deployment(String id) {
    this.id = id;
  }

  public String id() {
    return id;
  }

  /** The current routing, or null before anything is loaded. */
  public Routing routing() {
    return routing.get();
  }

  /**
   * Leases the model that answers the next request: the canary for {@code canaryPercent} of every
   * 100 requests (spread over them by stepping through the residues with a stride coprime to 100),
   * else the stable one. Null when nothing is loaded.
   */
  public Lease lease() {
    while (true) {
      Routing r = routing.get();
      if (r == null) {
        return null;
      }
      long n = requests.getAndIncrement();
      boolean toCanary = r.canary() != null && Math.floorMod(n * 37, 100) < r.canaryPercent();
      ServedModel m = toCanary ? r.canary() : r.stable();
      if (m.tryAcquire()) {
        return new Lease(m, toCanary ? Role.CANARY : Role.STABLE, r.teacher());
      }
      // retired and freed between reading the routing and borrowing: the new routing is already
      // visible
    }
  }

  /**
   * Makes {@code model} the stable artefact (hot swap) and drops any canary, retiring what it
   * replaces. Promoting the current canary's artefact reuses the loaded canary.
   */
  public synchronized void promote(ServedModel model, ServedModel teacher) {
    Routing old = routing.get();
    routing.set(new Routing(model, null, 0, teacher));
    if (old != null) {
      retireUnless(old.stable(), model);
      retireUnless(old.canary(), model);
    }
  }

  /**
   * Routes {@code percent}% of the requests to {@code canary}, keeping the stable artefact;
   * replaces any canary.
   */
  public synchronized void canary(ServedModel canary, int percent, ServedModel teacher) {
    Routing old = routing.get();
    if (old == null) {
      throw new IllegalStateException(
          "deployment " + id + " has no stable artefact to run a canary beside");
    }
    if (percent < 0 || percent > 100) {
      throw new IllegalArgumentException("canary percent must be in [0, 100], got " + percent);
    }
    routing.set(new Routing(old.stable(), canary, percent, teacher));
    retireUnless(old.canary(), canary);
  }

  /**
   * Drops the canary (RolledBack); the stable artefact keeps answering. Returns whether there was
   * one.
   */
  public synchronized boolean dropCanary() {
    Routing old = routing.get();
    if (old == null || old.canary() == null) {
      return false;
    }
    routing.set(new Routing(old.stable(), null, 0, old.teacher()));
    old.canary().retire();
    return true;
  }

  /** Retires everything this deployment serves (node shutdown); in-flight requests still finish. */
  public synchronized void close() {
    Routing old = routing.getAndSet(null);
    if (old != null) {
      old.stable().retire();
      if (old.canary() != null) {
        old.canary().retire();
      }
    }
  }

  private static void retireUnless(ServedModel old, ServedModel kept) {
    if (old != null && old != kept) {
      old.retire();
    }
  }
}
