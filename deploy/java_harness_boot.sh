#!/bin/sh
# The command of the Java PROCESS environment (expansion service flags
# --defaultEnvironmentType=PROCESS --defaultEnvironmentConfig='{"command": "<repo>/deploy/java_harness_boot.sh"}'):
# runs runners/java_harness_boot.py with the interpreter in PAYBEAM_PYTHON (default: the repo's
# .venv, else python3), which needs apache-beam (its gRPC stubs) to read the provision service.
REPO="$(cd "$(dirname "$0")/.." && pwd)"
PYTHON="${PAYBEAM_PYTHON:-}"
[ -z "$PYTHON" ] && { [ -x "$REPO/.venv/bin/python" ] && PYTHON="$REPO/.venv/bin/python" || PYTHON=python3; }
PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" exec "$PYTHON" -m runners.java_harness_boot "$@"
