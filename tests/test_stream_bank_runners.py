"""Unbounded `paybeam stream --bank-statements-topic` on Prism and on the embedded Flink, against a real
Kafka-protocol broker.

The CLI runs as a child process, as an operator would run it. Settlement lines of a payout and its PAYOUT
line go to the settlements topic, a bank statement (one whole camt.053 document) crediting the payout to
the statements topic, and a message that is no statement beside it. While the run goes on, the payouts
topic shows the payout balanced, the bank-matches topic shows it received by reference (with the credit's
entry_ref), and the message that is no statement is a dead letter: in both engines on Prism, in the
columnar engine on Flink. Generated ids only.
"""
from __future__ import annotations

import signal
from datetime import date, timedelta

import pytest

from datagen.bank_files import Account, BankLine, write_statements
from pipelines.io.kafka import create_topics
from tests.beam_helpers import T0, settlement
from tests.flink_helpers import flink_args
from tests.kafka_helpers import unique_topic
from tests.prism_helpers import prism_binary
from tests.stream_helpers import decoded, group_name, new_topics, produce_records, produce_values
from tests.test_prism_stream import (
    STARTUP_DEADLINE_SECONDS,
    _kill,
    _recent,
    _start,
    _stop,
    _unbounded_arguments,
    _wait_for,
)

pytestmark = pytest.mark.engines

BANK_TOPICS = ("bank_statements", "payouts", "bank_matches")
# The textbook Dutch IBAN of the ISO 13616 examples (no one's account).
ACCOUNT = Account(iban="NL91ABNA0417164300", number="0417164300", currency="USD", bic="ABNANL2A", opening_minor=0)


def _statement(tmp_path, day: date, payout_id: str, amount: int) -> bytes:
    line = BankLine(account=0, day=day, credit=True, amount_minor=amount, bank_reference="BREF0001",
                    end_to_end_id=payout_id, payer="STRIPE PAYMENTS")
    path, = write_statements("camt053", str(tmp_path), [ACCOUNT], [line])
    with open(path, "rb") as handle:
        return handle.read()


@pytest.fixture(scope="module")
def prism_built():
    return prism_binary()  # fails with the `make engine-prism` hint when it was not fetched


@pytest.mark.parametrize("engine", ["columnar", "elementwise"])
def test_an_unbounded_stream_on_prism_balances_a_payout_and_finds_its_bank_credit(kafka_broker, prism_built,
                                                                                  tmp_path, engine):
    _balances_a_payout_and_finds_its_bank_credit(kafka_broker, tmp_path, ["--engine", engine])


def test_an_unbounded_stream_on_flink_balances_a_payout_and_finds_its_bank_credit(kafka_broker, flink_engine,
                                                                                  tmp_path):
    # Parallelism 1, checkpoints every 10 s: as tests/test_flink_streaming.py runs an unbounded job.
    _balances_a_payout_and_finds_its_bank_credit(kafka_broker, tmp_path, flink_args(
        flink_engine, "[local]", "--environment_type=LOOPBACK", "--checkpointing_interval=10000", "--parallelism=1"),
        runner_flag=False)


def _balances_a_payout_and_finds_its_bank_credit(kafka_broker, tmp_path, extra, runner_flag=True):
    servers = kafka_broker.bootstrap_servers
    topics, group = new_topics(servers), group_name()
    bank_topics = {name: unique_topic(name) for name in BANK_TOPICS}
    create_topics(servers, list(bank_topics.values()), partitions=1)
    now = _recent()
    day = (T0 + timedelta(milliseconds=now)).date()
    produce_records(servers, topics["settlements"], [
        settlement("s1", "ref_1", 1500, time=now, payout_id="po_live0001"),
        settlement("s2", "ref_2", 600, time=now + 1000, payout_id="po_live0001", record_type="REFUND"),
        settlement("s3", "payout", 900, time=now + 2000, payout_id="po_live0001", record_type="PAYOUT"),
    ], "settlement_line")
    produce_values(servers, bank_topics["bank_statements"], [
        _statement(tmp_path, day, "po_live0001", 900), b"not a statement"], partitions=1)
    arguments = _unbounded_arguments(servers, topics, group)
    if not runner_flag:  # the runner comes with `extra`
        at = arguments.index("--runner")
        del arguments[at:at + 2]
    arguments += [*extra, "--bank-statements-topic", bank_topics["bank_statements"],
        "--payouts-topic", bank_topics["payouts"], "--bank-matches-topic", bank_topics["bank_matches"]]
    process = _start(arguments)
    try:
        balanced = _wait_for("the payout balanced", lambda: [
            row for row in decoded(servers, bank_topics["payouts"])
            if row["payout_id"] == "po_live0001" and row["status"] == "PAYOUT_BALANCED"], process,
            STARTUP_DEADLINE_SECONDS)
        assert (balanced[-1]["payout_minor"], balanced[-1]["lines_minor"], balanced[-1]["line_count"]) == (900, 900, 2)
        received = _wait_for("the payout received", lambda: [
            row for row in decoded(servers, bank_topics["bank_matches"])
            if row["payout_id"] == "po_live0001" and row["status"] == "PAYOUT_RECEIVED"], process)
        assert received[-1]["matched_by"] == "reference" and received[-1]["credit_minor"] == 900
        assert received[-1]["entry_ref"] and not received[-1]["is_final"]
        letters = _wait_for("the message that is no statement as a dead letter", lambda: [
            row for row in decoded(servers, topics["dead_letters"]) if row["input"] == "bank_statements"], process)
        assert letters[0]["stage"] == "decode" and "not a bank statement" in letters[0]["reason"]
        stderr = _stop(process, signal.SIGTERM)
    finally:
        _kill(process)
    assert process.returncode == 128 + signal.SIGTERM, stderr[-3000:]
