package io.distillery.feedback;

import java.util.Collections;
import java.util.List;
import java.util.SortedSet;
import java.util.TreeSet;

/**
 * One hopping window of one deployment: distinct misfired prompts (by prompt hash, so a prompt
 * counts once), the repeats that were not counted, and the requests the serving nodes reported for
 * the same time.
 *
 * @param start inclusive, epoch millis
 * @param end exclusive, epoch millis
 * @param prompts hashes of the distinct prompts that misfired in the window, sorted
 */
record MisfireWindow(
    String deploymentId,
    long start,
    long end,
    long duplicates,
    long requests,
    List<String> prompts) {

  MisfireWindow {
    prompts = List.copyOf(prompts);
  }

  static MisfireWindow empty(String deploymentId, long start, long end) {
    return new MisfireWindow(deploymentId, start, end, 0, 0, List.of());
  }

  long misfires() {
    return prompts.size();
  }

  /**
   * Distinct misfires per request; 0 while no request was reported (a rate over nothing trips
   * nothing).
   */
  double rate() {
    return requests == 0 ? 0.0 : (double) misfires() / requests;
  }

  boolean contains(String promptHash) {
    return Collections.binarySearch(prompts, promptHash) >= 0;
  }

  MisfireWindow withPrompt(String promptHash) {
    if (contains(promptHash)) {
      return new MisfireWindow(deploymentId, start, end, duplicates + 1, requests, prompts);
    }
    SortedSet<String> s = new TreeSet<>(prompts);
    s.add(promptHash);
    return new MisfireWindow(deploymentId, start, end, duplicates, requests, List.copyOf(s));
  }

  MisfireWindow withRequests(long n) {
    return new MisfireWindow(deploymentId, start, end, duplicates, requests + n, prompts);
  }
}
