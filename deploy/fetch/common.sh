#!/usr/bin/env bash
# Shared by deploy/fetch/*.sh: the engine cache, the pinned versions, and the tools that fetch.
# Everything fetched lands in $ENGINES_CACHE (git-ignored, default <repo>/.cache/engines),
# one directory per artifact and version; a finished fetch writes a `.complete` marker so a
# re-run is a no-op and an interrupted one starts over.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
ENGINES_CACHE="${ENGINES_CACHE:-$REPO/.cache/engines}"
mkdir -p "$ENGINES_CACHE"
set -a
# shellcheck source=../versions.env
. "$REPO/deploy/versions.env"
set +a

# Maven: the machine's `mvn` if any, else Debian's package.
ensure_maven() {
  if ! command -v mvn >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq maven >/dev/null
  fi
}

# The JDK's `javac` and `jar` (the runner patch below): the machine's if any, else Debian's JDK 17.
ensure_jdk() {
  if ! command -v javac >/dev/null 2>&1 || ! command -v jar >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq openjdk-17-jdk-headless >/dev/null
  fi
}

# `maven_copy DEST GROUP:ARTIFACT:VERSION [more coordinates…]`: the artifacts and all their
# runtime dependencies as jars in DEST (through a throwaway pom, so Maven resolves conflicts).
# MAVEN_EXCLUDE_GROUPS (space-separated groupIds) leaves those groups out of every dependency.
maven_copy() {
  local dest="$1"; shift
  [ -f "$dest/.complete" ] && return 0
  ensure_maven
  rm -rf "$dest"; mkdir -p "$dest"
  local pom="$dest/.pom.xml" deps="" exclude=""
  for group in ${MAVEN_EXCLUDE_GROUPS:-}; do
    exclude="$exclude<exclusion><groupId>$group</groupId><artifactId>*</artifactId></exclusion>"
  done
  [ -n "$exclude" ] && exclude="<exclusions>$exclude</exclusions>"
  for coordinate in "$@"; do
    IFS=: read -r group artifact version <<<"$coordinate"
    deps="$deps<dependency><groupId>$group</groupId><artifactId>$artifact</artifactId><version>$version</version>$exclude</dependency>"
  done
  cat >"$pom" <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0"><modelVersion>4.0.0</modelVersion>
<groupId>paybeam.fetch</groupId><artifactId>fetch</artifactId><version>0</version>
<dependencies>$deps</dependencies></project>
POM
  mvn -q -B -f "$pom" dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$dest"
  touch "$dest/.complete"
}

# `flink_runner_patch LIB`: deploy/fetch/flink_patch/*.java compiled against LIB's jars into
# LIB/$FLINK_RUNNER_PATCH_JAR, again whenever a source is newer than it. Its name sorts first, so its
# classes come before the runner's own on every classpath made of LIB (the job server's launcher, the
# standalone cluster's): Beam 2.70's SDF residual handling with a bounded set of state names (docs/DESIGN.md 7).
FLINK_RUNNER_PATCH_JAR=000-paybeam-flink-runner-patch.jar
flink_runner_patch() {
  local lib="$1" jar="$1/$FLINK_RUNNER_PATCH_JAR" source classes stale=""
  for source in "$REPO"/deploy/fetch/flink_patch/*.java; do
    [ -f "$jar" ] && [ ! "$source" -nt "$jar" ] || stale=1
  done
  [ -n "$stale" ] || return 0
  ensure_jdk
  classes="$(mktemp -d)"
  javac --release 11 -nowarn -d "$classes" -cp "$lib/*" "$REPO"/deploy/fetch/flink_patch/*.java
  rm -f "$jar"
  jar --create --file "$jar" -C "$classes" .
  rm -rf "$classes"
}

# `flink_job_server_launcher JAR`: the Flink job server's launcher jar (Main-Class + Class-Path of
# lib/ beside JAR), with the Java 17 module flags Flink's own env.java.opts.all carries. Without the
# opened packages Flink's Kryo cannot snapshot JDK collections (an Arrays$ArrayList in KafkaIO's
# checkpoint state), every checkpoint is declined, and neither offsets nor a @RequiresStableInput
# write (Java WriteToKafka) ever complete. An executable jar's manifest may open them (`java -jar`,
# the way Beam's FlinkRunner starts a job server).
flink_job_server_launcher() {
  local opens="" package
  for package in java.lang java.net java.io java.nio sun.nio.ch java.lang.reflect java.text java.time \
      java.util java.util.concurrent java.util.concurrent.atomic java.util.concurrent.locks; do
    opens="$opens${opens:+ }java.base/$package"
  done
  python3 "$REPO/deploy/fetch/launcher_jar.py" "$1" org.apache.beam.runners.flink.FlinkJobServerDriver lib \
    "Add-Opens: $opens" "Add-Exports: java.base/sun.net.util java.rmi/sun.rmi.registry"
}
