#!/usr/bin/env bash
# Apache Kafka (the broker, org.apache.kafka:kafka_2.13) with its runtime dependencies from Maven
# Central into $ENGINES_CACHE/kafka-$KAFKA_VERSION, for pipelines/brokers/apache_kafka.py (a single-node
# KRaft broker+controller the tests start with `java -cp '<dir>/*' kafka.Kafka server.properties`).
# kafka_2.13 brings log4j-core but its logs go through slf4j 1.x, which without a binding prints a
# warning and drops everything, start-up errors included; log4j-slf4j-impl routes them to log4j2,
# configured by apache_kafka.py (warnings and errors into the broker's log file).
# Idempotent: a finished fetch is a no-op.
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
maven_copy "$ENGINES_CACHE/kafka-$KAFKA_VERSION" \
  "org.apache.kafka:kafka_2.13:$KAFKA_VERSION" \
  "org.apache.logging.log4j:log4j-slf4j-impl:$KAFKA_LOG4J_VERSION"
echo "$ENGINES_CACHE/kafka-$KAFKA_VERSION"
