"""One table of business rules (schemas/rules.py) for both engines and the vendor adapters.

The source scan fails when an engine or adapter spells a status, record type, sign mapping or
count name of its own instead of reading the table; the behavioural tests change the table and
check that both engines (and the adapters) follow it, so a rule changed there changes everything.
"""
from __future__ import annotations

import ast
from collections import Counter, defaultdict
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator, List, Tuple

import pyarrow as pa
import pytest

from schemas import rules
from schemas.internal_records import Candidate
from schemas.record_tables import PAYMENT_TABLE, SETTLEMENT_TABLE, records_to_table
from schemas.records import DAILY_TOTAL_FIELDS, PaymentEvent, SettlementLine
from transforms.columnar.daily_totals import PARTIAL_TABLE, ledger_partials, settlement_partials
from transforms.columnar.matching import CANDIDATE_TABLE, LEDGER_SIDE, SETTLEMENT_SIDE, reconcile_candidates
from transforms.daily_totals import SettlementDay, ledger_contribution, settlement_contribution
from transforms.matching import LEDGER, SETTLEMENT, MatchPolicy, reconcile_key, with_revision

ROOT = Path(__file__).resolve().parents[1]
RULES_MODULE = ROOT / "schemas" / "rules.py"
STATUS_SCANNED = [*sorted((ROOT / "transforms").rglob("*.py")), *sorted((ROOT / "schemas").rglob("*.py")),
                  *sorted((ROOT / "pipelines").rglob("*.py"))]
TYPE_SCANNED = [*sorted((ROOT / "transforms").rglob("*.py")), *sorted((ROOT / "schemas" / "vendors").glob("*.py"))]
COUNT_SCANNED = [ROOT / path for path in ("transforms/flow.py", "transforms/columnar/flow.py", "transforms/counting.py",
                                          "pipelines/summary.py", "pipelines/backfill_run.py",
                                          "pipelines/reconcile_batch.py")]
TYPES = set(rules.RECORD_TYPES) | set(rules.EVENT_TYPES)


# ---------------------------------------------------------------- (a) nothing spelled outside the table


def _docstrings(tree: ast.AST) -> set:
    nodes = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                nodes.add(id(first.value))
    return nodes


def _texts(path: Path) -> Iterator[Tuple[int, str]]:
    """(line, text) of every string constant of a module but its docstrings (f-string parts included)."""
    tree = ast.parse(path.read_text(), str(path))
    docstrings = _docstrings(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            yield node.lineno, node.value


def _int_value(node: ast.AST) -> bool:
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        node = node.operand
    return isinstance(node, ast.Constant) and isinstance(node.value, int) and not isinstance(node.value, bool)


def _type_text(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and node.value in TYPES


def _type_collection(node: ast.AST) -> bool:
    return isinstance(node, (ast.Set, ast.Tuple, ast.List)) and bool(node.elts) and all(map(_type_text, node.elts))


def _own_rules(path: Path) -> Iterator[str]:
    """Sign mappings (a record or event type -> an int), sets of types, comparisons with a type."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Dict) and any(
                _type_text(key) and _int_value(value) for key, value in zip(node.keys, node.values)):
            yield f"line {node.lineno}: a sign mapping"
        elif _type_collection(node):
            yield f"line {node.lineno}: a set of record types"
        elif isinstance(node, ast.Compare) and any(
                _type_text(side) or _type_collection(side) for side in (node.left, *node.comparators)):
            yield f"line {node.lineno}: a comparison with a record type"


def _relative(path: Path) -> str:
    return str(path.relative_to(ROOT))


ALL_STATUSES = {*rules.STATUSES, *rules.PAYOUT_STATUSES, *rules.BANK_MATCH_STATUSES}


def test_no_status_is_spelled_outside_the_rules_table():
    found = [f"{_relative(path)}:{line} {text!r}" for path in STATUS_SCANNED if path != RULES_MODULE
             for line, text in _texts(path) if text in ALL_STATUSES]
    assert found == []


def test_the_engines_spell_no_record_or_event_type():
    found = [f"{_relative(path)}:{line} {text!r}" for path in TYPE_SCANNED if path.parts[-2] != "vendors"
             for line, text in _texts(path) if text in TYPES]
    assert found == []


def test_no_engine_or_adapter_has_a_sign_rule_or_type_set_of_its_own():
    # The adapters name record types only as their vendors' vocabulary (category -> record type).
    found = [f"{_relative(path)} {finding}" for path in TYPE_SCANNED for finding in _own_rules(path)]
    assert found == []


def test_count_names_are_built_by_the_table_only():
    whats = tuple(f".{what}" for what in rules.INPUT_COUNTS)
    named = {rules.RESULT_ROWS, rules.DAILY_TOTAL_ROWS, rules.AS_OF_MILLIS}
    found = [f"{_relative(path)}:{line} {text!r}" for path in COUNT_SCANNED for line, text in _texts(path)
             if text in named or text.endswith(whats) or text.startswith(rules.status_count_name(""))]
    assert found == []


def test_the_scan_sees_a_hard_coded_status_and_sign(tmp_path):
    engine = tmp_path / "engine.py"
    engine.write_text('"""MATCHED in a docstring is fine."""\n'
                      'SIGN = {"REFUND": -1}\n'
                      'def f(row):\n    """PENDING"""\n    return row.status == "MATCHED" or row.record_type in ("FEE",)\n')
    assert [text for _, text in _texts(engine) if text in rules.STATUSES] == ["MATCHED"]
    assert len(list(_own_rules(engine))) == 3  # the mapping, the tuple and the comparison with it


def test_the_daily_total_sums_are_the_daily_total_fields_in_order():
    start = DAILY_TOTAL_FIELDS.index(rules.SUM_COLUMNS[0])
    assert DAILY_TOTAL_FIELDS[start:start + len(rules.SUM_COLUMNS)] == rules.SUM_COLUMNS
    assert tuple(PARTIAL_TABLE.names[-len(rules.SUM_COLUMNS):]) == rules.SUM_COLUMNS
    assert set(rules.SETTLEMENT_SUMS) == set(rules.RECORD_TYPES) == set(rules.BALANCE_SIGN)
    assert set(rules.STATUSES) == {status for _, status in rules.STATUS_RULES} | {
        rules.UNDECIDED_STATUS, rules.DUPLICATE_LEDGER_EVENT, rules.DUPLICATE_SETTLEMENT}
    assert {fact for required, _ in rules.STATUS_RULES for fact in required} <= set(rules.FACTS)


# ---------------------------------------------------------------- (b) both engines follow a changed table

DAY = 86_400_000
T0 = 1_767_571_200_000
POLICY = MatchPolicy(5, timedelta(days=3), timedelta(days=1))
AS_OF = T0 + 2 * DAY

# (reference, side, id, amount, currency, time): one key per situation the rules tell apart.
KEYS = [
    ("within", LEDGER, "e1", 1000, "EUR", T0), ("within", SETTLEMENT, "s1", 1004, "EUR", T0),
    ("beyond", LEDGER, "e2", 1000, "EUR", T0), ("beyond", SETTLEMENT, "s2", 1010, "EUR", T0),
    ("currency", LEDGER, "e3", 1000, "EUR", T0), ("currency", SETTLEMENT, "s3", 1000, "USD", T0),
    ("ledger-waiting", LEDGER, "e4", 1000, "EUR", T0),
    ("ledger-due", LEDGER, "e5", 1000, "EUR", T0 - 2 * DAY),
    ("line-due", SETTLEMENT, "s6", 1000, "EUR", T0),
    ("line-waiting", SETTLEMENT, "s7", 1000, "EUR", AS_OF - 1),
    ("duplicates", LEDGER, "e8", 1000, "EUR", T0), ("duplicates", LEDGER, "e9", 1000, "EUR", T0 + 1),
]


def _per_element() -> Counter:
    by_key = defaultdict(list)
    for reference, side, record_id, amount, currency, time in KEYS:
        by_key[("stripe", reference, "CAPTURE")].append(Candidate(side, record_id, "m_1", amount, currency, time))
    return Counter(tuple(row) for key, candidates in by_key.items()
                   for row in with_revision(reconcile_key(key, candidates, AS_OF, POLICY), 1, True))


def _columnar() -> Counter:
    rows = [("stripe", reference, "CAPTURE", LEDGER_SIDE if side == LEDGER else SETTLEMENT_SIDE, record_id, "m_1",
             amount, currency, time) for reference, side, record_id, amount, currency, time in KEYS]
    table = pa.Table.from_arrays([pa.array(column, field.type) for column, field in zip(zip(*rows), CANDIDATE_TABLE)],
                                 schema=CANDIDATE_TABLE)
    return Counter(tuple(row.values()) for row in reconcile_candidates(table, AS_OF, POLICY).to_pylist())


def _statuses(rows: Counter) -> dict:
    return {row[1]: row[3] for row in rows if row[3] not in (rules.DUPLICATE_LEDGER_EVENT, rules.DUPLICATE_SETTLEMENT)}


def test_both_engines_give_the_tables_statuses():
    assert _columnar() == _per_element()
    assert _statuses(_per_element()) == {
        "within": "MATCHED", "beyond": "AMOUNT_MISMATCH", "currency": "CURRENCY_MISMATCH",
        "ledger-waiting": "PENDING", "ledger-due": "MISSING_SETTLEMENT", "line-due": "UNEXPECTED_SETTLEMENT",
        "line-waiting": "PENDING", "duplicates": "PENDING"}


def test_both_engines_follow_a_changed_status_decision(monkeypatch):
    # Another table: no currency rule, the tolerance outcome reversed, every due key missing its settlement,
    # and an undecided key called by another name.
    monkeypatch.setattr(rules, "STATUS_RULES", (
        ((rules.PAIRED, rules.WITHIN_TOLERANCE), rules.AMOUNT_MISMATCH),
        ((rules.PAIRED,), rules.MATCHED),
        ((rules.DUE,), rules.MISSING_SETTLEMENT),
    ))
    monkeypatch.setattr(rules, "UNDECIDED_STATUS", "STILL_OPEN")
    assert _columnar() == _per_element()
    assert _statuses(_per_element()) == {
        "within": "AMOUNT_MISMATCH", "beyond": "MATCHED", "currency": "AMOUNT_MISMATCH",
        "ledger-waiting": "STILL_OPEN", "ledger-due": "MISSING_SETTLEMENT", "line-due": "MISSING_SETTLEMENT",
        "line-waiting": "STILL_OPEN", "duplicates": "STILL_OPEN"}


def _lines() -> List[SettlementLine]:
    booked = int(datetime(2026, 3, 10, 9, tzinfo=timezone.utc).timestamp() * 1000)
    return [SettlementLine(f"stl-{index}", "stripe", "ref-1", "m-001", record_type, gross, fee, gross - fee, "EUR",
                           "2026-03-10", booked, None)
            for index, (record_type, gross, fee) in enumerate([
                ("CAPTURE", 1000, 30), ("REFUND", 500, 10), ("CHARGEBACK", 700, -15), ("FEE", 25, 0),
                ("FEE", -50, 5), ("ADJUSTMENT", -1600, 0), ("ADJUSTMENT", 2500, -1500), ("PAYOUT", 9000, 30)])]


def _events() -> List[PaymentEvent]:
    time = int(datetime(2026, 3, 10, 9, tzinfo=timezone.utc).timestamp() * 1000)
    return [PaymentEvent(f"e{index}", "pay-1", event_type, "stripe", "ref-1", "m-001", 100 * (index + 1), "EUR", time)
            for index, event_type in enumerate(rules.EVENT_TYPES)]


def _sums_both_ways() -> Tuple[dict, dict]:
    per_element = [sum(column) for column in zip(*(settlement_contribution(line).sums for line in _lines()),
                                                 *(ledger_contribution(event).sums for event in _events()))]
    columnar = Counter()
    for partials in (settlement_partials(records_to_table(_lines(), SETTLEMENT_TABLE), SettlementDay()),
                     ledger_partials(records_to_table(_events(), PAYMENT_TABLE), SettlementDay())):
        for row in partials.to_pylist():
            columnar.update({name: int(row[name]) for name in rules.RECORD_SUM_COLUMNS})
    return dict(zip(rules.RECORD_SUM_COLUMNS, per_element)), {name: columnar[name] for name in rules.RECORD_SUM_COLUMNS}


def test_both_engines_give_the_tables_sums():
    per_element, columnar = _sums_both_ways()
    assert per_element == columnar
    assert per_element["settled_gross_minor"] == 1000 - 500 - 700
    assert per_element["settled_net_minor"] == per_element["settled_gross_minor"] - per_element["fee_minor"]


def test_both_engines_follow_changed_signs_and_sums(monkeypatch):
    # Refunds counted as money in, payouts as adjustments, refunded ledger amounts as captures.
    changed = dict(rules.SETTLEMENT_SUMS, REFUND=rules._matched_flow(1), PAYOUT=rules.SETTLEMENT_SUMS["ADJUSTMENT"])
    monkeypatch.setattr(rules, "SETTLEMENT_SUMS", changed)
    monkeypatch.setattr(rules, "LEDGER_SUM_OF_EVENT_TYPE", {"CAPTURED": "captured_minor", "REFUNDED": "captured_minor"})
    per_element, columnar = _sums_both_ways()
    assert per_element == columnar
    assert per_element["settled_gross_minor"] == 1000 + 500 - 700
    assert per_element["payout_minor"] == 0 and per_element["adjustment_minor"] == -1600 + 2500 + 9000
    assert per_element["captured_minor"] == 100 * 2 + 100 * 3 and per_element["refunded_minor"] == 0


@pytest.mark.parametrize("adapter", ["stripe", "adyen"])
def test_the_adapters_follow_a_changed_balance_sign(monkeypatch, adapter):
    from schemas.vendors import vendor_row_from_settlement
    from schemas.vendors.adyen import settlement_fields_from_adyen_row
    from schemas.vendors.stripe import settlement_fields_from_stripe_row

    line = SettlementLine("adj-1", adapter, "adj-1", "m-001", "ADJUSTMENT", -1600, 0, -1600, "EUR", "2026-03-10",
                          int(datetime(2026, 3, 10, 9, tzinfo=timezone.utc).timestamp() * 1000), None)
    read = settlement_fields_from_stripe_row if adapter == "stripe" else settlement_fields_from_adyen_row
    row = vendor_row_from_settlement(adapter, line)
    assert read(row)["gross_minor"] == -1600
    # ADJUSTMENT counting money leaving as positive, as FEE and PAYOUT do: the same row reads the other way.
    monkeypatch.setattr(rules, "BALANCE_SIGN", dict(rules.BALANCE_SIGN, ADJUSTMENT=-1))
    assert read(row)["gross_minor"] == 1600
    assert read(vendor_row_from_settlement(adapter, line))["gross_minor"] == -1600  # still its own inverse
