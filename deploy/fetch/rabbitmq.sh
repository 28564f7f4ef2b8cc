#!/usr/bin/env bash
# RabbitMQ for the RabbitMQ tests and `paybeam rabbitmq broker` (pipelines/brokers/rabbitmq.py): Debian's
# rabbitmq-server package (RABBITMQ_DEBIAN_SERIES in deploy/versions.env: the series the tests were written
# against; its stream plugin ships in the package). Not a cached download: Maven Central serves no broker
# and the package brings its Erlang runtime, so apt installs it (as root, as .ci/run installs make). The
# broker class runs the installed scripts from a temporary directory; the package's own service is not used.
# Idempotent: an installed package is a no-op.
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
SERVER=/usr/lib/rabbitmq/bin/rabbitmq-server
if [ ! -x "$SERVER" ]; then
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "RabbitMQ is missing: install Debian's package as root: apt-get install rabbitmq-server" >&2
    exit 1
  fi
  apt-get update -qq
  # No service start in a container without an init system; the tests start their own brokers.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends rabbitmq-server >/dev/null
fi
installed="$(dpkg-query -W -f='${Version}' rabbitmq-server 2>/dev/null || echo unknown)"
case "$installed" in
  "$RABBITMQ_DEBIAN_SERIES".*) ;;
  *) echo "note: rabbitmq-server $installed installed; the tests were written against $RABBITMQ_DEBIAN_SERIES.x" >&2 ;;
esac
echo "$SERVER ($installed)"
