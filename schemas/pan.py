"""Card numbers (PANs) in text: find them, mask them (docs/formats.md, "Card numbers and personal data").

A PAN here is what PCI DSS scanners look for: 13 to 19 digits that pass the
Luhn check, written contiguously or in groups joined by single spaces or
dashes ("4111 1111 1111 1111", "4111-1111-1111-1111"). A digit run is the
longest stretch of digit groups joined by single separators; a PAN is a
group-aligned window of a run, so "qty 2 4111111111111111" and a grouped PAN
followed by a grouped expiry are both caught, while one contiguous group of
20+ digits (a long numeric id) is never cut into windows.

Masking keeps the first 6 and last 4 digits (PCI DSS's most) and replaces
the others with "*", separators kept in place: the text keeps its length and
shape (CSV columns stay aligned) and the mask is easy to recognise.
Numbers that are not text (amounts) are never looked at.
"""
from __future__ import annotations

import re
from typing import FrozenSet, List, Tuple

MIN_DIGITS, MAX_DIGITS = 13, 19
KEEP_FIRST, KEEP_LAST = 6, 4
MASK = "*"

# The fast path: text without 13 digits joined by single separators holds no PAN (a plain re search;
# the columnar engine runs the same pattern with pyarrow.compute over whole columns).
CANDIDATE_PATTERN = r"[0-9](?:[ -]?[0-9]){12}"
_CANDIDATE = re.compile(CANDIDATE_PATTERN)
_RUN = re.compile(r"[0-9]+(?:[ -][0-9]+)*")
_GROUP = re.compile(r"[0-9]+")

Span = Tuple[int, int]


def luhn_valid(digits: str) -> bool:
    """Whether a string of decimal digits passes the Luhn (mod 10) check."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if position % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def may_hold_pan(text: str) -> bool:
    """The cheap precheck: False means `text` certainly holds no PAN."""
    return _CANDIDATE.search(text) is not None


def find_pan_spans(text: str) -> List[Span]:
    """(start, end) of each PAN in `text`, left to right, not overlapping; at each group, the longest wins."""
    if not may_hold_pan(text):
        return []
    spans: List[Span] = []
    for run in _RUN.finditer(text):
        groups = [(match.start() + run.start(), match.end() + run.start()) for match in _GROUP.finditer(run.group())]
        spans += _windows(text, groups)
    return spans


def _windows(text: str, groups: List[Span]) -> List[Span]:
    found: List[Span] = []
    first = 0
    while first < len(groups):
        best = None
        digits = ""
        for last in range(first, len(groups)):
            digits += text[groups[last][0]:groups[last][1]]
            if len(digits) > MAX_DIGITS:
                break
            if len(digits) >= MIN_DIGITS and luhn_valid(digits):
                best = last
        if best is None:
            first += 1
            continue
        found.append((groups[first][0], groups[best][1]))
        first = best + 1
    return found


def mask_pans(text: str, keep: FrozenSet[str] = frozenset()) -> Tuple[str, int]:
    """(text with every PAN masked to its first 6 and last 4 digits, how many were masked).

    `keep`: exact values that are identifiers in a format a processor
    documents (an Adyen PSP reference), left as they are. Masking repeats
    until no PAN is left: the kept digits of a masked PAN can form a new
    Luhn-valid window with a neighbouring group, and the output must hold none.
    """
    count = 0
    while True:
        spans = [span for span in find_pan_spans(text) if text[span[0]:span[1]] not in keep]
        if not spans:
            return text, count
        text = _with_masked(text, spans)
        count += len(spans)


def _with_masked(text: str, spans: List[Span]) -> str:
    parts, done = [], 0
    for start, end in spans:
        parts += [text[done:start], _masked(text[start:end])]
        done = end
    parts.append(text[done:])
    return "".join(parts)


def _masked(pan: str) -> str:
    total = sum(char.isdigit() for char in pan)
    out, seen = [], 0
    for char in pan:
        if char.isdigit():
            seen += 1
            out.append(char if seen <= KEEP_FIRST or seen > total - KEEP_LAST else MASK)
        else:
            out.append(char)
    return "".join(out)
