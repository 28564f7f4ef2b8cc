# paybeam — the two quick-start commands are `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_PAYMENTS ?= 20000
PYTEST_ARGS ?=

.PHONY: venv demo lint test bench broker notebooks clean engines test-engines engine-flink engine-prism engine-kafka engine-kafka-java engine-rabbitmq

venv: $(VENV)/.installed

$(VENV)/.installed: setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,bench,notebooks]'
	touch $@

## Generate a sample and reconcile it on the DirectRunner.
demo: venv
	$(BIN)/paybeam generate --payments $(DEMO_PAYMENTS) --out demo/data --quiet
	$(BIN)/paybeam reconcile --payments 'demo/data/payments/*' --settlements 'demo/data/settlements/*' \
		--output demo/out --csv

## Every engine the tests run, fetched into .cache/engines (git-ignored; versions in deploy/versions.env),
## and RabbitMQ (Debian's package, installed by apt).
engines: engine-kafka engine-prism engine-flink engine-kafka-java engine-rabbitmq

## Lint: ruff (unused imports, undefined names, import order; ruff.toml) and the import floors
## (import-linter, .importlinter: a package imports only the floors below it, docs/DESIGN.md 2).
lint: venv
	$(BIN)/ruff check .
	$(BIN)/lint-imports

## The test suite (what CI runs first): lint, then everything but the slow `engines`-marked tests (pytest.ini).
test: venv engines lint
	$(BIN)/pytest -q -n 2 --durations=10 $(PYTEST_ARGS) tests

## The engine tests (CI runs them second): slow Prism/Flink runs, and the Kafka tests again on Apache Kafka.
KAFKA_TESTS := tests/test_kafka_sink.py tests/test_kafka_source.py tests/test_kafka_tools.py \
	tests/test_stream_commits.py tests/test_stream_kafka.py tests/test_stream_open_items.py \
	tests/test_stream_poison.py tests/test_broker_outage.py tests/test_local_broker_cli.py
test-engines: venv engines
	$(BIN)/pytest -q -n 0 --durations=10 -m engines $(PYTEST_ARGS) tests
	$(BIN)/pytest -q -n 2 --durations=10 --kafka-broker=apache $(PYTEST_ARGS) $(KAFKA_TESTS)

## A local in-memory Kafka-protocol broker on 127.0.0.1:9092 (Ctrl-C stops it).
broker: venv
	$(BIN)/paybeam kafka broker --port 9092

## Register the venv as a Jupyter kernel ("paybeam (.venv)") for notebooks/.
notebooks: venv
	$(BIN)/python -m ipykernel install --user --name paybeam --display-name "paybeam (.venv)"
	@echo "open notebooks/*.ipynb in any Jupyter front end and pick the 'paybeam (.venv)' kernel"

## Batch benchmark at 1M payments (a script, not a test).
bench: venv
	$(BIN)/python benchmarks/batch_reconcile.py 1000000

## Beam's Flink job server and Flink jars from Maven Central into .cache/engines (deploy/fetch/flink.sh).
engine-flink:
	bash deploy/fetch/flink.sh

## Beam's Prism runner built with `go install` at BEAM_VERSION (fetches Go if missing or too old).
engine-prism:
	bash deploy/fetch/prism.sh

## Beam's Java KafkaIO (expansion service, SDK harness, Flink job server with KafkaIO) from Maven Central
## into .cache/engines (deploy/fetch/kafka_expansion.sh), for `paybeam stream --kafka-io=java`.
engine-kafka-java:
	bash deploy/fetch/kafka_expansion.sh

clean:
	rm -rf demo out .pytest_cache

## Apache Kafka broker jars (Maven Central) for `pytest --kafka-broker=apache` and tests/test_apache_kafka.py.
engine-kafka:
	bash deploy/fetch/kafka.sh

## RabbitMQ (Debian's rabbitmq-server, with its Erlang) for the RabbitMQ tests and `paybeam rabbitmq broker`:
## installed by apt when missing (as root; otherwise the script says the one command to run).
engine-rabbitmq:
	bash deploy/fetch/rabbitmq.sh
