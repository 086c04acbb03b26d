package io.distillery.runtime.worker;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.distillery.runtime.config.Settings;
import io.distillery.stage.StageContext;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.OptionalLong;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class WorkerMemoryTest {

  static final long GIB = 1L << 30;
  static final long MIB = 1L << 20;

  @TempDir Path cgroup;

  @Test
  void shouldParseSizesAsXmxDoesAndAsKubernetesWritesThem() {
    assertThat(WorkerMemory.parseSize("6g")).isEqualTo(6 * GIB);
    assertThat(WorkerMemory.parseSize("6G")).isEqualTo(6 * GIB);
    assertThat(WorkerMemory.parseSize("512m")).isEqualTo(512 * MIB);
    assertThat(WorkerMemory.parseSize("8Gi")).isEqualTo(8 * GIB);
    assertThat(WorkerMemory.parseSize("8GB")).isEqualTo(8 * GIB);
    assertThat(WorkerMemory.parseSize("64k")).isEqualTo(65536);
    assertThat(WorkerMemory.parseSize("1t")).isEqualTo(1L << 40);
    assertThat(WorkerMemory.parseSize(" 6442450944 "))
        .isEqualTo(6442450944L); // the downward API's limits.memory
  }

  @Test
  void shouldRefuseSizesThatAreNotPositiveWholeNumbersWithAUnit() {
    for (String bad :
        new String[] {
          "", "six", "6x", "-1g", "0", "1.5g", "g", "99999999999999999999", "9000000000t"
        }) {
      assertThatThrownBy(() -> WorkerMemory.parseSize(bad))
          .as(bad)
          .isInstanceOf(IllegalArgumentException.class)
          .hasMessageContaining("'" + bad + "'");
    }
  }

  @Test
  void shouldReadTheCgroupV2LimitAndTreatMaxAsNone() throws IOException {
    assertThat(WorkerMemory.cgroupLimit(cgroup)).isEmpty();
    Files.writeString(cgroup.resolve("memory.max"), "8589934592\n");
    assertThat(WorkerMemory.cgroupLimit(cgroup)).isEqualTo(OptionalLong.of(8 * GIB));
    Files.writeString(cgroup.resolve("memory.max"), "max\n");
    assertThat(WorkerMemory.cgroupLimit(cgroup)).isEmpty();
  }

  @Test
  void shouldReadTheCgroupV1LimitAndTreatTheHugeDefaultAsNone() throws IOException {
    Files.createDirectories(cgroup.resolve("memory"));
    Files.writeString(cgroup.resolve("memory/memory.limit_in_bytes"), "4294967296\n");
    assertThat(WorkerMemory.cgroupLimit(cgroup)).isEqualTo(OptionalLong.of(4 * GIB));
    Files.writeString(
        cgroup.resolve("memory/memory.limit_in_bytes"),
        "9223372036854771712\n"); // v1's "unlimited"
    assertThat(WorkerMemory.cgroupLimit(cgroup)).isEmpty();
  }

  @Test
  void shouldTakeTheSettingOverTheContainerLimit() throws IOException {
    Files.writeString(cgroup.resolve("memory.max"), Long.toString(8 * GIB));
    WorkerMemory m = WorkerMemory.resolve("6g", cgroup, 2 * GIB);
    assertThat(m.bytes()).isEqualTo(6 * GIB);
    assertThat(m.source()).isEqualTo("DISTILLERY_WORKER_MEMORY=6g");
  }

  @Test
  void shouldDefaultToThreeQuartersOfTheContainerLimitCappedByTheHeap() throws IOException {
    Files.writeString(cgroup.resolve("memory.max"), Long.toString(8 * GIB));
    assertThat(WorkerMemory.resolve("", cgroup, 7 * GIB).bytes()).isEqualTo(6 * GIB);
    assertThat(WorkerMemory.resolve(null, cgroup, 2 * GIB).bytes())
        .as("heap smaller")
        .isEqualTo(2 * GIB);
    assertThat(WorkerMemory.resolve(null, cgroup, 7 * GIB).source()).contains("8.6 GB");
  }

  @Test
  void shouldDefaultToTheMaxHeapWithoutAContainerLimit() {
    assertThat(WorkerMemory.resolve(" ", cgroup, 3 * GIB).bytes()).isEqualTo(3 * GIB);
  }

  @Test
  void shouldFormatInGigabytesWithOneDecimalAndSmallBudgetsInMegabytes() {
    assertThat(WorkerMemory.format(14_200_000_000L)).isEqualTo("14.2 GB");
    assertThat(WorkerMemory.format(64 * MIB)).isEqualTo("67.1 MB");
  }

  @Test
  void shouldReadTheMemorySettingIntoTheWorkerConfig() {
    Settings s =
        new Settings(
            "worker",
            Map.of(
                "DISTILLERY_BOOTSTRAP",
                "b:9092",
                "DISTILLERY_REGISTRY",
                "http://r",
                "DISTILLERY_WORKER_MEMORY",
                "512m"));
    WorkerConfig config = WorkerConfig.from(s);
    assertThat(config.memoryBudgetBytes()).isEqualTo(512 * MIB);
    assertThat(s.describe()).contains("memory=512m");
    assertThatThrownBy(
            () ->
                WorkerConfig.from(
                    new Settings(
                        "worker",
                        Map.of(
                            "DISTILLERY_BOOTSTRAP",
                            "b:9092",
                            "DISTILLERY_REGISTRY",
                            "http://r",
                            "DISTILLERY_WORKER_MEMORY",
                            "lots"))))
        .hasMessageContaining("'lots'");
  }

  @Test
  void shouldHandTheBudgetToEveryJobsStageContext() {
    WorkerConfig config = WorkerConfig.of("b:9092", "http://r", cgroup).withMemoryBudget(64 * MIB);
    StageContext<Params> ctx =
        JobLoop.context(
            config, null, new Params(1), null, List.of(), cgroup, cgroup, (p, m, x) -> {});
    assertThat(ctx.memoryBudgetBytes()).isEqualTo(64 * MIB);
    assertThat(config.withWorkerId("w").withHttpPort(0).memoryBudgetBytes())
        .as("kept by the withers")
        .isEqualTo(64 * MIB);
  }

  record Params(int x) {}
}
