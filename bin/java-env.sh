# Sourced by ./distillery, .ci/run and bench scripts: selects Java 25 and the DJL run settings (../shared/DJL.md).
if [ -z "${JAVA_HOME:-}" ] || ! "$JAVA_HOME/bin/java" -version 2>&1 | grep -q 'version "25'; then
  for candidate in /usr/lib/jvm/temurin-25-jdk-amd64 /usr/lib/jvm/temurin-25-jdk-arm64 /usr/lib/jvm/java-25-openjdk-amd64 /usr/lib/jvm/jdk-25*; do
    if [ -x "$candidate/bin/java" ]; then
      export JAVA_HOME="$candidate"
      break
    fi
  done
fi
if [ -z "${JAVA_HOME:-}" ] || ! "$JAVA_HOME/bin/java" -version 2>&1 | grep -q 'version "25'; then
  echo "Distillery needs Java 25 (Temurin 25 expected at /usr/lib/jvm/temurin-25-jdk-amd64); set JAVA_HOME." >&2
  exit 1
fi
export JAVA="$JAVA_HOME/bin/java"
export PATH="$JAVA_HOME/bin:$PATH"
# DJL must never reach the network, and must not probe the cloud metadata address.
export OPT_OUT_TRACKING=true
export DJL_OFFLINE=true
export DJL_CACHE_DIR="${DJL_CACHE_DIR:-$PWD/target/djl-cache}"
export DISTILLERY_JAVA_OPTS="${DISTILLERY_JAVA_OPTS:-} -Dai.djl.offline=true -DOPT_OUT_TRACKING=true --enable-native-access=ALL-UNNAMED --sun-misc-unsafe-memory-access=allow"
# Two glibc malloc arenas instead of 8 per core: libtorch's CPU allocator goes through malloc, and with the default each
# thread's arena kept the high-water mark of the forward and X^T X workspaces (bench/scale, 2 layers of the 1B width,
# 8 x 256 tokens: the quantizer's peak RssAnon 4.05 GB with the default, 3.24 GB with 2 arenas).
export MALLOC_ARENA_MAX="${MALLOC_ARENA_MAX:-2}"
# A fixed mmap threshold of 4 MB: glibc otherwise raises it to 32 MB after the first large free, and from then on
# libtorch's 4-32 MB tensors (a batch's keys, values, norms) are carved from the arenas and their fragments stay
# resident. Fixed, every tensor of 4 MB or more is its own mapping, returned to the kernel when freed (bench/scale,
# 3 layers of the 1B width, 32 x 512 tokens: the quantizer's peak RssAnon 3.87 GB, against 4.40 GB without it).
export MALLOC_MMAP_THRESHOLD_="${MALLOC_MMAP_THRESHOLD_:-4194304}"
