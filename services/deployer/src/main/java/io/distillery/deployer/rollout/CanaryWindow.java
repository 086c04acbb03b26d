package io.distillery.deployer.rollout;

import io.distillery.schemas.misfire.MisfireReason;
import java.util.Locale;

/**
 * The canary verdict, without Kafka: the traffic and misfire observations of one deployment since
 * its canary went active, tallied per artefact, and the rule that turns them into promote, roll
 * back or keep waiting.
 *
 * <p>Rate of an artefact = (misfires + errors) / requests over the window, where requests and
 * errors come from the serving nodes' {@code ServingTraffic} counts, and misfires = max(sum of
 * {@code ServingTraffic.misfires}, number of {@code Misfire} events): a node's counter includes
 * events it had to drop, the topic includes flags that users wrote themselves; the two overlap, so
 * they are not added. A timeout is a failure of the node, counted once, as an error: TIMEOUT
 * misfire events (which older nodes sent, and also counted in both {@code errors} and {@code
 * misfires}) are taken out of the node's misfire count and not counted as events.
 *
 * <p>The verdict waits until the canary has served {@code minRequests} requests or the window has
 * passed, whichever comes first. Then it rolls back when canaryRate &gt; stableRate + margin, and
 * promotes otherwise (also when the canary saw no traffic at all: no evidence against it).
 */
public final class CanaryWindow {

  private final String canarySha;
  private final String stableSha;
  private final long countFromMillis;
  private final long windowMillis;
  private final long minRequests;
  private final double margin;
  private final Counts canary = new Counts();
  private final Counts stable = new Counts();

  /**
   * @param countFromMillis observations stamped earlier than this (the DeploymentActive event's
   *     time) are ignored
   */
  public CanaryWindow(
      String canarySha,
      String stableSha,
      long countFromMillis,
      long windowMillis,
      long minRequests,
      double margin) {
    if (canarySha.equals(stableSha)) {
      throw new IllegalArgumentException("canary and stable are the same artefact " + canarySha);
    }
    this.canarySha = canarySha;
    this.stableSha = stableSha;
    this.countFromMillis = countFromMillis;
    this.windowMillis = windowMillis;
    this.minRequests = minRequests;
    this.margin = margin;
  }

  /** One node's counts for one artefact over one reporting interval ending at {@code tsMillis}. */
  public void traffic(
      String artefactSha, long requests, long errors, long misfires, long tsMillis) {
    Counts c = countsOf(artefactSha, tsMillis);
    if (c != null) {
      c.requests += requests;
      c.errors += errors;
      c.trafficMisfires += misfires;
    }
  }

  /** One Misfire event answered by {@code artefactSha} at {@code tsMillis}. */
  public void misfire(String artefactSha, MisfireReason reason, long tsMillis) {
    Counts c = countsOf(artefactSha, tsMillis);
    if (c == null) {
      return;
    }
    if (reason == MisfireReason.TIMEOUT) {
      c.timeoutEvents++; // already in the traffic's errors
    } else {
      c.misfireEvents++;
    }
  }

  private Counts countsOf(String sha, long ts) {
    if (ts < countFromMillis) {
      return null;
    }
    return sha.equals(canarySha) ? canary : sha.equals(stableSha) ? stable : null;
  }

  public Tally canary() {
    return canary.tally();
  }

  public Tally stable() {
    return stable.tally();
  }

  /** The verdict after {@code elapsedMillis} of watching. */
  public Verdict decide(long elapsedMillis) {
    Tally c = canary();
    Tally s = stable();
    if (c.requests() < minRequests && elapsedMillis < windowMillis) {
      double progress =
          Math.max((double) elapsedMillis / windowMillis, (double) c.requests() / minRequests);
      return new Verdict.KeepWaiting(Math.min(progress, 1.0), c, s);
    }
    if (c.rate() > s.rate() + margin) {
      return new Verdict.RollBack(
          String.format(
              Locale.ROOT,
              "canary %s misfire+error rate %.4f (%d/%d) exceeds stable %s rate %.4f (%d/%d) by more than %.4f",
              shortSha(canarySha),
              c.rate(),
              c.bad(),
              c.requests(),
              shortSha(stableSha),
              s.rate(),
              s.bad(),
              s.requests(),
              margin),
          c,
          s);
    }
    return new Verdict.Promote(c, s);
  }

  static String shortSha(String sha) {
    return sha.length() > 12 ? sha.substring(0, 12) : sha;
  }

  /** What the window holds for one artefact. */
  public record Tally(long requests, long errors, long misfires) {
    /** Misfires plus errors. */
    public long bad() {
      return misfires + errors;
    }

    /** (misfires + errors) / requests; 0 without requests. */
    public double rate() {
      return requests == 0 ? 0 : (double) bad() / requests;
    }
  }

  /** Promote, roll back, or keep watching (with how far the window got, 0..1). */
  public sealed interface Verdict {
    Tally canary();

    Tally stable();

    record KeepWaiting(double progress, Tally canary, Tally stable) implements Verdict {}

    record Promote(Tally canary, Tally stable) implements Verdict {}

    record RollBack(String reason, Tally canary, Tally stable) implements Verdict {}
  }

  private static final class Counts {
    long requests;
    long errors;
    long trafficMisfires;
    long misfireEvents;
    long timeoutEvents;

    Tally tally() {
      return new Tally(
          requests, errors, Math.max(Math.max(0, trafficMisfires - timeoutEvents), misfireEvents));
    }
  }
}
