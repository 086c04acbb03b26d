package io.distillery.runtime.worker;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Locale;
import java.util.OptionalLong;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * The memory one job on this worker may plan against (heap and native together), and where that
 * number came from, so a stage can refuse a model that cannot fit before it starts instead of dying
 * with an OutOfMemoryError.
 *
 * <p>Precedence: the {@code DISTILLERY_WORKER_MEMORY} setting ({@code 6g}, {@code 512m}, {@code
 * 8Gi}, or plain bytes as the Kubernetes downward API writes them); else the smaller of the
 * container's cgroup limit minus a quarter (the JVM's own metaspace, code cache, thread stacks,
 * Kafka buffers and the page cache of mapped checkpoints live in that quarter) and the JVM's
 * maximum heap; else the JVM's maximum heap, which the JVM sizes as its share of the physical RAM
 * it sees. The launcher and {@code k8s/worker.yaml} set {@code -XX:MaxRAMPercentage=40} (the
 * launcher {@code -Xmx} to half the setting), so that a full heap of garbage beside a stage's
 * native tensors stays within the machine: with the heap at 75% the kernel killed a 1B-shaped run
 * on a 24 GB machine.
 */
public record WorkerMemory(long bytes, String source) {

  /** cgroup v2's limit file, relative to the cgroup mount. */
  static final String CGROUP_V2 = "memory.max";

  /** cgroup v1's limit file, relative to the cgroup mount. */
  static final String CGROUP_V1 = "memory/memory.limit_in_bytes";

  /**
   * Limits at or above this are "no limit" (cgroup v1 writes 2^63 rounded down to a page for
   * unlimited).
   */
  static final long UNLIMITED = 1L << 50;

  /**
   * The share of a container limit a job may plan against; the rest is the JVM's and the kernel's.
   */
  static final double CONTAINER_SHARE = 0.75;

  private static final Pattern SIZE = Pattern.compile("(\\d+)\\s*(?:([kKmMgGtT])[iI]?)?[bB]?");

  public WorkerMemory {
    if (bytes <= 0) {
      throw new IllegalArgumentException("memory budget must be positive, got " + bytes);
    }
  }

  /**
   * The budget for {@code setting} (blank: none), the cgroup mount at {@code cgroupRoot} (normally
   * {@code /sys/fs/cgroup}) and a JVM whose maximum heap is {@code maxHeap}.
   */
  public static WorkerMemory resolve(String setting, Path cgroupRoot, long maxHeap) {
    if (setting != null && !setting.isBlank()) {
      return new WorkerMemory(parseSize(setting), "DISTILLERY_WORKER_MEMORY=" + setting.trim());
    }
    OptionalLong limit = cgroupLimit(cgroupRoot);
    if (limit.isPresent()) {
      long share = (long) (limit.getAsLong() * CONTAINER_SHARE);
      if (share < maxHeap) {
        return new WorkerMemory(share, "75% of the container limit " + format(limit.getAsLong()));
      }
      return new WorkerMemory(
          maxHeap, "the JVM's max heap (container limit " + format(limit.getAsLong()) + ")");
    }
    return new WorkerMemory(maxHeap, "the JVM's max heap (no container limit)");
  }

  /**
   * The budget of this process: {@code setting}, the real cgroup mount and this JVM's maximum heap.
   */
  public static WorkerMemory resolve(String setting) {
    return resolve(setting, Path.of("/sys/fs/cgroup"), Runtime.getRuntime().maxMemory());
  }

  /**
   * A size in bytes: a whole number with an optional binary unit {@code k}, {@code m}, {@code g} or
   * {@code t} (as {@code -Xmx} reads them; {@code Ki/Mi/Gi/Ti}, {@code KB/MB/GB/TB} and a trailing
   * {@code b} mean the same), or a plain number of bytes.
   *
   * @throws IllegalArgumentException naming the value when it is not such a size or is not positive
   */
  public static long parseSize(String value) {
    Matcher m = SIZE.matcher(value.trim());
    if (!m.matches()) {
      throw new IllegalArgumentException(
          "memory size '"
              + value
              + "' is not a whole number with an optional unit"
              + " k, m, g or t (e.g. 6g, 512m, 8Gi, 6442450944)");
    }
    int shift =
        m.group(2) == null
            ? 0
            : switch (Character.toLowerCase(m.group(2).charAt(0))) {
              case 'k' -> 10;
              case 'm' -> 20;
              case 'g' -> 30;
              default -> 40;
            };
    long n;
    try {
      n = Long.parseLong(m.group(1));
    } catch (NumberFormatException e) {
      throw new IllegalArgumentException("memory size '" + value + "' is too large");
    }
    if (n <= 0) {
      throw new IllegalArgumentException("memory size '" + value + "' must be positive");
    }
    if (n > (Long.MAX_VALUE >> shift)) {
      throw new IllegalArgumentException("memory size '" + value + "' is too large");
    }
    return n << shift;
  }

  /**
   * The memory limit of the cgroup mounted at {@code root}: v2's {@value #CGROUP_V2}, else v1's
   * {@value #CGROUP_V1}; empty when neither file exists or is readable, or it says {@code max} or a
   * number too large to be a real limit.
   */
  public static OptionalLong cgroupLimit(Path root) {
    for (String file : new String[] {CGROUP_V2, CGROUP_V1}) {
      Path path = root.resolve(file);
      if (!Files.isRegularFile(path)) {
        continue;
      }
      String text;
      try {
        text = Files.readString(path).trim();
      } catch (IOException e) {
        continue;
      }
      if (text.equals("max")) {
        return OptionalLong.empty();
      }
      try {
        long limit = Long.parseLong(text);
        return limit > 0 && limit < UNLIMITED ? OptionalLong.of(limit) : OptionalLong.empty();
      } catch (NumberFormatException e) {
        return OptionalLong.empty();
      }
    }
    return OptionalLong.empty();
  }

  /**
   * Bytes with one decimal, in GB from 1 GB up, else MB (powers of ten, as the memory plan's
   * messages count).
   */
  public static String format(long bytes) {
    return bytes >= 1e9
        ? String.format(Locale.ROOT, "%.1f GB", bytes / 1e9)
        : String.format(Locale.ROOT, "%.1f MB", bytes / 1e6);
  }

  @Override
  public String toString() {
    return format(bytes) + " (" + source + ")";
  }
}
