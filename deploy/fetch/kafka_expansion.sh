#!/usr/bin/env bash
# Beam's Java KafkaIO for `paybeam stream --kafka-io=java`, assembled from Maven Central.
#
# Maven Central serves no Kafka expansion-service jar newer than 2.43.0
# (beam-sdks-java-io-expansion-service), so it is built from its parts at ONE Beam Java
# version, KAFKA_JAVA_BEAM_VERSION (= the Flink job server's, see versions.env):
#   $ENGINES_CACHE/kafka-java-beam-<beam>/expansion/*.jar  expansion service + KafkaIO + kafka-clients
#       + the Java SDK harness: the classpath of
#       `java -cp '<dir>/*' org.apache.beam.sdk.expansion.service.ExpansionService <port> …`
#       and of Java harnesses that a runner starts as PROCESS environments (deploy/java_harness_boot.sh)
#   $ENGINES_CACHE/kafka-java-beam-<beam>/flink/lib/*.jar, flink/job-server.jar  the Flink job server
#       of deploy/fetch/flink.sh plus KafkaIO and the SDK harness at the runner's version, so Java
#       transforms run in the EMBEDDED environment inside the TaskManager (no Docker); the launcher
#       works with `--flink_job_server_jar` exactly like flink.sh's.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

beam="$KAFKA_JAVA_BEAM_VERSION"; clients="$KAFKA_JAVA_CLIENTS_VERSION"
minor="$FLINK_JOB_SERVER_FLINK_MINOR"; flink="$FLINK_JOB_SERVER_FLINK_VERSION"
dest="$ENGINES_CACHE/kafka-java-beam-$beam"
[ -f "$dest/.complete" ] && {
  flink_runner_patch "$dest/flink/lib"; flink_job_server_launcher "$dest/flink/job-server.jar"; echo "$dest"; exit 0; }
rm -rf "$dest"; mkdir -p "$dest"

# Every dependency excludes io.confluent:*: beam-sdks-java-io-kafka depends on Confluent's
# schema-registry serializers, served only by packages.confluent.io (which this machine cannot
# resolve; Maven Central answers 404). paybeam's KafkaIO reads/writes bytes and never uses a
# schema registry, so those classes are never loaded.
export MAVEN_EXCLUDE_GROUPS="io.confluent"

kafka_io=(
  "org.apache.beam:beam-sdks-java-io-kafka:$beam"
  "org.apache.beam:beam-sdks-java-harness:$beam"
  "org.apache.kafka:kafka-clients:$clients"
  "com.github.jbellis:jamm:$KAFKA_JAVA_JAMM_VERSION"
  "org.slf4j:slf4j-simple:$FLINK_JOB_SERVER_SLF4J_VERSION"
)
maven_copy "$dest/expansion" "org.apache.beam:beam-sdks-java-expansion-service:$beam" "${kafka_io[@]}"

# One resolution for runner + KafkaIO, so shared dependencies get one version; the explicit
# harness/core coordinates win over the 2.65.0 ones that beam-runners-java-job-service pulls in.
maven_copy "$dest/flink/lib" \
  "${kafka_io[@]}" \
  "org.apache.beam:beam-sdks-java-core:$beam" \
  "org.apache.beam:beam-runners-flink-$minor:$FLINK_JOB_SERVER_BEAM_VERSION" \
  "org.apache.beam:beam-runners-java-job-service:$FLINK_JOB_SERVER_JOB_SERVICE_VERSION" \
  "org.apache.flink:flink-clients:$flink" \
  "org.apache.flink:flink-streaming-java:$flink" \
  "org.apache.flink:flink-runtime:$flink" \
  "org.apache.flink:flink-core:$flink" \
  "org.apache.flink:flink-java:$flink" \
  "org.apache.flink:flink-metrics-core:$flink"

# The job server's launcher (common.sh): Main-Class, Class-Path and Java 17 module flags.
flink_runner_patch "$dest/flink/lib"
flink_job_server_launcher "$dest/flink/job-server.jar"
# The expansion service's launcher (`java -jar`, as Beam's JavaJarExpansionService starts one when
# BEAM_KAFKA_EXPANSION_SERVICE is not set, pipelines/io/kafka/_java.py): Main-Class + Class-Path.
python3 "$(dirname "$0")/launcher_jar.py" "$dest/expansion-service.jar" \
  org.apache.beam.sdk.expansion.service.ExpansionService expansion
touch "$dest/.complete"
echo "$dest"
