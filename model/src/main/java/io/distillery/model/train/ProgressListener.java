package io.distillery.model.train;

/** Called after every optimizer step, on the training thread; keep it cheap. */
@FunctionalInterface
public interface ProgressListener {

  void onStep(TrainingProgress progress);

  static ProgressListener none() {
    return progress -> {};
  }
}
