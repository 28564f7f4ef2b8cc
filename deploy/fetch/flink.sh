#!/usr/bin/env bash
# The Beam Flink job server and a standalone Flink (JobManager + TaskManager) from Maven Central.
#
# Beam publishes no beam-runners-flink-*-job-server jar for BEAM_VERSION on Maven Central, and
# Flink's own distribution (flink-dist) is not served either, so both are assembled from the
# runner library beam-runners-flink-<minor> and the Flink jars at FLINK_JOB_SERVER_* (versions.env):
#   $ENGINES_CACHE/flink-<flink>-beam-<beam>/lib/*.jar       runtime classpath (runner + Flink)
#   $ENGINES_CACHE/flink-<flink>-beam-<beam>/job-server.jar  launcher: Main-Class + Class-Path, so
#       `--flink_job_server_jar=<it>` works unchanged with Beam's Python FlinkRunner (`java -jar`)
# The same lib/ is the classpath of the standalone cluster (tests/flink_cluster.py).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

beam="$FLINK_JOB_SERVER_BEAM_VERSION"; minor="$FLINK_JOB_SERVER_FLINK_MINOR"; flink="$FLINK_JOB_SERVER_FLINK_VERSION"
dest="$ENGINES_CACHE/flink-$flink-beam-$beam"
# One fetch at a time (parallel test workers may all ask for it): the others wait, then find it done.
exec 9>"$ENGINES_CACHE/.flink.lock"
flock 9
# The launcher is rewritten even in a finished fetch (it is a few bytes), so a cache fetched before
# a launcher change gets the new one.
# A cache fetched before the RocksDB state backend joined the list is fetched again.
[ -f "$dest/.complete" ] && compgen -G "$dest/lib/flink-statebackend-rocksdb-*.jar" >/dev/null && {
  flink_runner_patch "$dest/lib"; flink_job_server_launcher "$dest/job-server.jar"; echo "$dest"; exit 0; }
rm -rf "$dest"; mkdir -p "$dest"

maven_copy "$dest/lib" \
  "org.apache.beam:beam-runners-flink-$minor:$beam" \
  "org.apache.beam:beam-runners-java-job-service:$FLINK_JOB_SERVER_JOB_SERVICE_VERSION" \
  "org.apache.flink:flink-clients:$flink" \
  "org.apache.flink:flink-streaming-java:$flink" \
  "org.apache.flink:flink-runtime:$flink" \
  "org.apache.flink:flink-core:$flink" \
  "org.apache.flink:flink-java:$flink" \
  "org.apache.flink:flink-metrics-core:$flink" \
  "org.apache.flink:flink-statebackend-rocksdb:$flink" \
  "org.slf4j:slf4j-simple:$FLINK_JOB_SERVER_SLF4J_VERSION"

flink_runner_patch "$dest/lib"
# The launcher: an empty jar whose manifest names the driver, the classpath (paths relative to the
# launcher, as the jar spec wants) and the Java 17 module flags (common.sh).
flink_job_server_launcher "$dest/job-server.jar"
touch "$dest/.complete"
echo "$dest"
