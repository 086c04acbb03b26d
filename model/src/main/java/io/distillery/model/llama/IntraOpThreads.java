package io.distillery.model.llama;

import ai.djl.pytorch.jni.JniUtils;

/**
 * PyTorch's intra-op threads for one Java thread only. {@code torch::set_num_threads} sets the
 * calling thread's OpenMP and MKL thread counts and a process-wide default that threads read the
 * first time they run an op; this sets the calling thread's count and puts the process-wide default
 * back from a short-lived helper thread, so the rest of the process (training, other models) keeps
 * its parallelism.
 *
 * <p>Why: a small model's ops take microseconds, and each op split across threads waits for the
 * whole team; on a busy machine that wait is a scheduler time slice. Measured on 2 busy cores (load
 * 8), 8 generations of 16 tokens on the 2 x 128 random student: 2 threads 500-1200 ms per request,
 * 1 thread 90-180 ms.
 */
public final class IntraOpThreads {

  /** Hidden size below which one intra-op thread is faster than several for a decode step. */
  public static final int SINGLE_THREAD_BELOW_HIDDEN = 1024;

  private IntraOpThreads() {}

  /**
   * Sets the calling thread's intra-op threads to {@code threads}; others keep theirs and new
   * threads keep the process default. Returns the calling thread's count afterwards.
   */
  public static int limitCurrentThread(int threads) {
    if (threads < 1) {
      throw new IllegalArgumentException("threads must be at least 1, got " + threads);
    }
    // first read initialises this thread's count from the default, so that the default put back
    // below is not read again by this thread on its next op
    int processDefault = JniUtils.getNumThreads();
    if (processDefault == threads) {
      return threads;
    }
    JniUtils.setNumThreads(threads);
    Thread restore =
        Thread.ofPlatform()
            .name("intra-op-threads-restore")
            .start(() -> JniUtils.setNumThreads(processDefault));
    try {
      restore.join();
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
    return JniUtils.getNumThreads();
  }

  /**
   * One thread for models narrower than {@value #SINGLE_THREAD_BELOW_HIDDEN} (their ops are too
   * small to split), the process default otherwise.
   */
  public static int forDecoding(LlamaModel model) {
    if (model.config().hiddenSize() < SINGLE_THREAD_BELOW_HIDDEN) {
      return limitCurrentThread(1);
    }
    return JniUtils.getNumThreads();
  }
}
