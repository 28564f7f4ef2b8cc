"""`transforms.bank.matching.match_bank_credits` on Arrow tables of payouts and bank entries (docs/DESIGN.md 3.8).

The rule over lists stays the reference: tests/test_columnar_bank_matching.py compares every column of every
row with it. Here every step is a join or a count over whole columns, so one worker matches a run's payouts
(thousands to ~100k) against its bank credits (up to about a million):

1. Which credits name which paid payouts: each matchable credit's reference keys (below) looked up among
   the `reference_key`s of the paid payouts (several payouts may share a key: every one of them is named),
   as distinct (credit, payout) pairs; `np.bincount` gives, per payout, the credits naming it and, per
   credit, the payouts it names.
2. By amount, for payouts no credit names against credits naming none: (currency, amount) groups shared by
   both sides, and each payout's day window [payout day - 1, add_business_days(payout day, SLA)] a range
   of ranks of the day strings (ranks in Python's string order, so `first <= day <= last` is the
   reference's own ISO-text comparison), found by `np.searchsorted` over the credits sorted by (group, day
   rank).
3. Statuses by `np.select` over those counts. One row per paid payout (with the credit it took, if any)
   and one per credit no payout took.

Reference keys: a credit's keys are `credit_references` of it, exactly. Text that holds no "batch" (in any
case: only the ASCII letters match it case-insensitively, in Python's regular expressions as in Arrow's)
cannot hold an Adyen batch reference, and there the keys are the tokens of `references.py` (runs of the
ASCII letters, digits, `_` and `-`, at least MIN_TOKEN_LENGTH long, upper-cased; any other character, ASCII
or not, separates them): Arrow splits and upper-cases those columns at once. A credit with "batch" in a
searched field (Adyen's "BATCH 1234", whose spacing and digits Python reads Unicode-aware and Arrow would
not) goes through `credit_references` itself, one row at a time.

Dates are parsed once per distinct day string (a run holds a few hundred), by the reference's own
`date.fromisoformat` and `add_business_days`, and only where the reference parses them.

Inputs the reference would reject (a null amount, an unreadable credit day, which it reads only on the
rows that need it) are not checked again here: validated bank entries and payout balances have neither.
"""
from __future__ import annotations

from datetime import date, timedelta
from typing import Callable, List, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from schemas.arrow import BANK_MATCH
from schemas.bank.entry import BOOKED, CREDIT
from schemas.record_tables import to_numpy
from schemas.rules import (
    AMBIGUOUS_BANK_MATCH,
    PAYOUT_AMOUNT_DIFFERS,
    PAYOUT_NOT_RECEIVED,
    PAYOUT_RECEIVED,
    PENDING,
    UNEXPECTED_BANK_CREDIT,
)
from transforms.bank.matching import (
    DEFAULT_BANK_POLICY,
    MATCHED_BY_AMOUNT,
    MATCHED_BY_REFERENCE,
    BankPolicy,
    add_business_days,
)
from transforms.bank.references import (
    ADYEN_BATCH_WORD,
    MIN_TOKEN_LENGTH,
    SEARCHED_FIELDS,
    TOKEN_CHARACTERS,
    credit_references,
    reference_key,
)
from transforms.columnar.payouts import judged_once

_SEPARATORS = f"[^{TOKEN_CHARACTERS}]+"
_ADYEN_WORD = ADYEN_BATCH_WORD  # text holding this (any case) may name an Adyen batch: the reference reads it
_PAYOUT_COLUMNS = (("processor", "processor"), ("payout_id", "payout_id"), ("merchant_id", "merchant_id"),
                   ("payout_currency", "currency"),
                   ("payout_minor", "payout_minor"), ("payout_date", "payout_date"))
_CREDIT_COLUMNS = (("entry_ref", "entry_ref"), ("account", "account"), ("credit_currency", "currency"),
                   ("credit_minor", "amount_minor"))
_CREDIT_READ = ["entry_ref", "account", "currency", "amount_minor", "value_date", "booking_date", *SEARCHED_FIELDS]
_STATUSES = (PAYOUT_RECEIVED, PAYOUT_AMOUNT_DIFFERS, PAYOUT_NOT_RECEIVED, UNEXPECTED_BANK_CREDIT,
             AMBIGUOUS_BANK_MATCH, PENDING)
_RECEIVED, _DIFFERS, _NOT_RECEIVED, _UNEXPECTED, _AMBIGUOUS, _PENDING = range(len(_STATUSES))
_MATCHED_BY = (MATCHED_BY_REFERENCE, MATCHED_BY_AMOUNT)
_BY_NONE, _BY_REFERENCE, _BY_AMOUNT = -1, 0, 1
# Payout rows first, by (processor, payout id); then credit rows, by entry_ref (nulls last).
_CREDIT_ROW = "credit_row"
_ORDER: List[Tuple[str, str]] = [(_CREDIT_ROW, "ascending"), ("processor", "ascending"), ("payout_id", "ascending"),
                                 ("entry_ref", "ascending")]


def match_bank_credits_table(payouts: pa.Table, entries: pa.Table, as_of: date,
                             policy: BankPolicy = DEFAULT_BANK_POLICY) -> pa.Table:
    """payouts: schemas.arrow.PAYOUT_BALANCE rows; entries: schemas.arrow.BANK_ENTRY rows (any bank entries:
    debits, pending, reversals included; only matchable credits take part, as is_matchable_credit says).
    Returns schemas.arrow.BANK_MATCH rows: exactly the rows match_bank_credits gives (same multiset, every
    column), sorted by (payout row first: processor, payout_id; then credit rows by entry_ref)."""
    paid = payouts.filter(paid_payouts(payouts))
    # Only the columns the rule reads are filtered (a run holds up to about a million credits).
    credits = entries.select(_CREDIT_READ).filter(matchable_credits(entries))
    days = credit_days(credits)
    amounts = to_numpy(pc.fill_null(credits.column("amount_minor"), 0)).astype(np.int64)
    has_amount = _valid(credits.column("amount_minor"))
    payout_minor = to_numpy(pc.fill_null(paid.column("payout_minor"), 0)).astype(np.int64)

    # 1. By reference.
    pair_credit, pair_payout = named_pairs(paid, credits)
    naming = np.bincount(pair_payout, minlength=paid.num_rows)  # credits naming each payout
    named = np.bincount(pair_credit, minlength=credits.num_rows)  # payouts each credit names
    reference_credit = _only_partner(pair_payout, pair_credit, naming, paid.num_rows)
    by_reference = (reference_credit >= 0) & (_at(named, reference_credit) == 1)

    # 2. By amount: payouts no credit names, against the credits that name none (and have an amount).
    unnamed = naming == 0
    candidate_payout, candidate_credit, late = amount_candidates(paid, credits, days, unnamed,
                                                                 (named == 0) & has_amount, as_of, policy)
    candidates = np.bincount(candidate_payout, minlength=paid.num_rows)  # credits each payout could be
    could_carry = np.bincount(candidate_credit, minlength=credits.num_rows)  # payouts each credit could carry
    amount_credit = _only_partner(candidate_payout, candidate_credit, candidates, paid.num_rows)
    by_amount = (amount_credit >= 0) & (_at(could_carry, amount_credit) == 1)

    # 3. One row per paid payout, with the one credit it took, if any.
    taken_credit = np.where(by_reference, reference_credit, np.where(by_amount, amount_credit, -1))
    paired = taken_credit >= 0
    same_currency = _same(pc.take(credits.column("currency"), _indices(taken_credit)), paid.column("currency"))
    difference = _at(amounts, taken_credit) - payout_minor
    has_difference = paired & same_currency & _at(has_amount, taken_credit)
    payout_status = np.select(
        [has_difference & (difference == 0), paired, ~unnamed | (candidates > 0), late],
        [_RECEIVED, _DIFFERS, _AMBIGUOUS, _NOT_RECEIVED], _PENDING)
    payout_count = np.select([paired, ~unnamed], [1, naming], candidates)
    matched_by = np.select([by_reference, by_amount], [_BY_REFERENCE, _BY_AMOUNT], _BY_NONE)

    # ... and one per credit no payout took: ambiguous, or unexpected once its grace has passed.
    taken = np.zeros(credits.num_rows, dtype=bool)
    taken[taken_credit[paired]] = True
    left = np.flatnonzero(~taken)
    left_named, left_could = named[left], could_carry[left]
    due = _credits_due(days, left[(left_named == 0) & (left_could == 0)], as_of, policy, credits.num_rows)[left]
    credit_status = np.select([(left_named > 0) | (left_could > 0), due], [_AMBIGUOUS, _UNEXPECTED], _PENDING)

    return _rows(
        paid, credits, days,
        payout_index=np.concatenate([np.arange(paid.num_rows), np.full(len(left), -1)]),
        credit_index=np.concatenate([taken_credit, left]),
        matched_by=np.concatenate([matched_by, np.full(len(left), _BY_NONE)]),
        candidate_count=np.concatenate([payout_count, np.where(left_named > 0, left_named, left_could)]),
        difference=np.concatenate([difference, np.zeros(len(left), np.int64)]),
        has_difference=np.concatenate([has_difference, np.zeros(len(left), dtype=bool)]),
        status=np.concatenate([payout_status, credit_status]).astype(np.int64))


def paid_payouts(payouts: pa.Table) -> pa.Array:
    """The payouts that expect a credit: a PAYOUT line (an amount and a day) that paid something out."""
    positive = pc.fill_null(pc.greater(payouts.column("payout_minor"), 0), False)
    return pc.and_(positive, pc.is_valid(payouts.column("payout_date")))


def matchable_credits(entries: pa.Table) -> pa.Array:
    """is_matchable_credit, per row: a booked credit that is not a reversal (a null status is not booked,
    a null reversal is not a reversal, as the reference reads the record's values)."""
    credit = pc.fill_null(pc.equal(entries.column("credit_debit"), CREDIT), False)
    booked = pc.fill_null(pc.equal(entries.column("status"), BOOKED), False)
    return pc.and_(pc.and_(credit, booked), pc.invert(pc.fill_null(entries.column("reversal"), False)))


def credit_days(credits: pa.Table) -> pa.Array:
    """credit_day, per row: `str(value_date or booking_date)` (an empty value date falls back too)."""
    value_date = credits.column("value_date")
    has_value_date = pc.fill_null(pc.not_equal(value_date, ""), False)
    return pc.if_else(has_value_date, value_date,
                      pc.fill_null(credits.column("booking_date"), str(None))).combine_chunks()


def reference_keys(credits: pa.Table) -> Tuple[np.ndarray, pa.Array]:
    """(credit row, key) for every key of `credit_references(row)`; a key may repeat within a row."""
    columns = [credits.column(name) for name in SEARCHED_FIELDS]
    plain = np.ones(credits.num_rows, dtype=bool)
    for column in columns:
        plain &= ~pc.fill_null(pc.match_substring(column, _ADYEN_WORD, ignore_case=True), False).to_numpy(
            zero_copy_only=False)
    rows: List[np.ndarray] = []
    keys: List[pa.Array] = []
    plain_rows = np.flatnonzero(plain)
    for column in columns:
        tokens = pc.split_pattern_regex(column.take(plain_rows), pattern=_SEPARATORS).combine_chunks()
        parents, flat = pc.list_parent_indices(tokens), pc.list_flatten(tokens)
        long_enough = pc.greater_equal(pc.binary_length(flat), MIN_TOKEN_LENGTH)
        rows.append(plain_rows[to_numpy(parents.filter(long_enough))])
        keys.append(pc.ascii_upper(flat.filter(long_enough)))
    # Everything else is the reference's own tokenisation, row by row.
    other_rows = np.flatnonzero(~plain)
    other = credits.select(list(SEARCHED_FIELDS)).take(other_rows).to_pylist()
    other_keys = [list(credit_references(entry)) for entry in other]
    rows.append(np.repeat(other_rows, [len(found) for found in other_keys]))
    keys.append(pa.array([key for found in other_keys for key in found], pa.string()))
    return np.concatenate(rows).astype(np.int64), pa.concat_arrays(keys)


def named_pairs(paid: pa.Table, credits: pa.Table) -> Tuple[np.ndarray, np.ndarray]:
    """Distinct (credit, payout) row pairs where the credit names the payout."""
    payout_keys = pa.array([reference_key(payout_id) for payout_id in paid.column("payout_id").to_pylist()],
                           pa.string())
    distinct_keys = pc.unique(payout_keys)
    token_rows, tokens = reference_keys(credits)
    code = pc.index_in(tokens, value_set=distinct_keys)
    hit = pc.is_valid(code).to_numpy(zero_copy_only=False)
    # A credit may hold a key in several fields: one pair per (credit, key) before the payouts are joined.
    pairs = np.unique(token_rows[hit] * len(distinct_keys) + to_numpy(code.filter(hit)).astype(np.int64))
    credit, key = np.divmod(pairs, max(len(distinct_keys), 1))
    payout_code = to_numpy(pc.index_in(payout_keys, value_set=distinct_keys)).astype(np.int64)
    by_code = np.argsort(payout_code, kind="stable")
    owner, position = _ranges(np.searchsorted(payout_code[by_code], key, "left"),
                              np.searchsorted(payout_code[by_code], key, "right"))
    return credit[owner], by_code[position]


def amount_candidates(paid: pa.Table, credits: pa.Table, days: pa.Array, unnamed: np.ndarray, open_credits: np.ndarray,
                      as_of: date, policy: BankPolicy) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(payout, credit) candidate pairs by amount (unnamed payouts against open credits of their currency and
    amount, valued within the payout's window), and per payout whether its SLA has passed by `as_of`."""
    payouts, opened = np.flatnonzero(unnamed), np.flatnonzero(open_credits)
    first, last, late_of = _windows(paid.column("payout_date").take(payouts), as_of, policy)
    late = np.zeros(paid.num_rows, dtype=bool)
    late[payouts] = late_of
    # Ranks in Python's string order: `first <= day <= last` on ranks is the reference's comparison of text.
    texts = pa.concat_arrays([days.take(opened), first, last])
    ranks = pc.index_in(texts, value_set=pa.array(sorted(pc.unique(texts).to_pylist()), pa.string()))
    rank = to_numpy(ranks).astype(np.int64)
    day_rank = rank[:len(opened)]
    first_rank, last_rank = np.split(rank[len(opened):], 2)
    # One group per (currency, amount) of either side (a null currency is a currency: None == None there).
    currency = pc.dictionary_encode(pa.concat_arrays([
        credits.column("currency").take(opened).combine_chunks(),
        paid.column("currency").take(payouts).combine_chunks()]), null_encoding="encode").indices
    amount = np.concatenate([to_numpy(credits.column("amount_minor").take(opened)),
                             to_numpy(paid.column("payout_minor").take(payouts))]).astype(np.int64)
    group = _groups(to_numpy(currency).astype(np.int64), amount)
    width = len(texts) + 1  # more than any rank: (group, rank) -> one int64 in (group, rank) order
    credit_key = group[:len(opened)] * width + day_rank
    by_key = np.argsort(credit_key, kind="stable")
    payout_group = group[len(opened):]
    owner, position = _ranges(np.searchsorted(credit_key[by_key], payout_group * width + first_rank, "left"),
                              np.searchsorted(credit_key[by_key], payout_group * width + last_rank, "right"))
    return payouts[owner], opened[by_key[position]], late


def _windows(payout_days: pa.Array, as_of: date, policy: BankPolicy) -> Tuple[pa.Array, pa.Array, np.ndarray]:
    """Per payout day: the first and last credit day its window takes, and whether its SLA has passed."""
    def window(text: str) -> Tuple[str, str, bool]:
        payout_day = date.fromisoformat(text)
        sla_end = add_business_days(payout_day, policy.bank_sla_business_days)
        return (payout_day - timedelta(days=1)).isoformat(), sla_end.isoformat(), as_of > sla_end

    distinct, code = _per_distinct(payout_days, window)
    first, last, late = zip(*distinct) if distinct else ((), (), ())
    return (pa.array(first, pa.string()).take(code), pa.array(last, pa.string()).take(code),
            np.array(late, dtype=bool)[code] if len(code) else np.zeros(0, dtype=bool))


def _credits_due(days: pa.Array, rows: np.ndarray, as_of: date, policy: BankPolicy, count: int) -> np.ndarray:
    """Per credit (of `rows`: the others False): whether its grace has passed, `as_of > day + grace`."""
    def due(text: str) -> bool:
        return as_of > date.fromisoformat(text) + policy.credit_grace

    distinct, code = _per_distinct(days.take(rows), due)
    result = np.zeros(count, dtype=bool)
    result[rows] = np.array(distinct, dtype=bool)[code] if len(rows) else False
    return result


def _per_distinct(texts: pa.Array, rule: Callable[[str], object]) -> Tuple[list, np.ndarray]:
    """`rule` of each distinct text (days: a few hundred in a run), and each row's index among them."""
    texts = texts.combine_chunks() if isinstance(texts, pa.ChunkedArray) else texts
    distinct = pc.unique(texts)
    code = to_numpy(pc.index_in(texts, value_set=distinct)).astype(np.int64)
    return [rule(text) for text in distinct.to_pylist()], code


def _groups(currency: np.ndarray, amount: np.ndarray) -> np.ndarray:
    """A dense id per distinct (currency, amount), in that order."""
    order = np.lexsort((amount, currency))
    changed = np.ones(len(order), dtype=bool)
    changed[1:] = (np.diff(currency[order]) != 0) | (np.diff(amount[order]) != 0)
    group = np.empty(len(order), dtype=np.int64)
    group[order] = np.cumsum(changed) - 1
    return group


def _ranges(starts: np.ndarray, ends: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Every position of each [start, end) range, with the index of the range it came from."""
    counts = (ends - starts).astype(np.int64)
    owner = np.repeat(np.arange(len(counts)), counts)
    offsets = np.cumsum(counts) - counts
    return owner, (np.repeat(starts - offsets, counts) + np.arange(counts.sum())).astype(np.int64)


def _only_partner(owners: np.ndarray, partners: np.ndarray, count: np.ndarray, size: int) -> np.ndarray:
    """Per owner with exactly one partner, that partner; -1 for the others."""
    only = np.full(size, -1, dtype=np.int64)
    single = count[owners] == 1
    only[owners[single]] = partners[single]
    return only


def _at(values: np.ndarray, index: np.ndarray) -> np.ndarray:
    """values[index], and the zero of values' type where index is -1 (no row)."""
    return np.append(values, np.zeros(1, dtype=values.dtype))[index]


def _valid(column: pa.ChunkedArray) -> np.ndarray:
    return pc.is_valid(column).to_numpy(zero_copy_only=False)


def _indices(index: np.ndarray) -> pa.Array:
    """Row indices for `take`, null (a null value) where index is -1."""
    return pa.array(index, pa.int64(), mask=index < 0)


def _same(left: pa.ChunkedArray, right: pa.ChunkedArray) -> np.ndarray:
    """Python's `==` of two text columns, row by row: two nulls are the same (None == None)."""
    equal = pc.fill_null(pc.equal(left, right), False)
    both_null = pc.and_(pc.is_null(left), pc.is_null(right))
    return pc.or_(equal, both_null).to_numpy(zero_copy_only=False)


def _rows(paid: pa.Table, credits: pa.Table, days: pa.Array, payout_index: np.ndarray, credit_index: np.ndarray,
          matched_by: np.ndarray, candidate_count: np.ndarray, difference: np.ndarray, has_difference: np.ndarray,
          status: np.ndarray) -> pa.Table:
    """The BANK_MATCH table of these rows, in the documented order."""
    payout_rows, credit_rows = _indices(payout_index), _indices(credit_index)
    columns = {name: pc.take(paid.column(source), payout_rows) for name, source in _PAYOUT_COLUMNS}
    columns.update({name: pc.take(credits.column(source), credit_rows) for name, source in _CREDIT_COLUMNS})
    columns.update(
        value_date=pc.take(days, credit_rows),
        matched_by=pc.take(pa.array(_MATCHED_BY, pa.string()), _indices(matched_by)),
        candidate_count=pa.array(candidate_count, pa.int64()),
        difference_minor=pa.array(difference, pa.int64(), mask=~has_difference),
        status=pc.take(pa.array(_STATUSES, pa.string()), pa.array(status, pa.int64())), **judged_once(len(status)))
    table = pa.Table.from_arrays([columns[name] for name in BANK_MATCH.names], schema=BANK_MATCH)
    order = pc.sort_indices(table.append_column(_CREDIT_ROW, pa.array(payout_index < 0)), sort_keys=_ORDER)
    return table.take(order).combine_chunks()
