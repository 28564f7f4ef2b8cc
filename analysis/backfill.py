"""What `paybeam backfill` published under an output directory, and whether it still holds.

    report = load_backfill("out/")      # per-date table, results / daily totals / dead letters of every date
    manifest_checks("out/")             # one row per date: outputs untouched? inputs unchanged? same versions?

The per-date table comes from each `date=D/manifest.json` (its counts are those
of the published files); the concatenated frames come from the data files
themselves, with a leading `date` column (the backfill date whose directory
holds the row). Money and times stay integer (nullable ``Int64``), as in
`analysis.results`.
"""
from __future__ import annotations

import glob
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import pandas as pd

from analysis.results import parquet_rows, records_frame
from schemas.records import PAYMENTS, SETTLEMENTS, DailyTotal, DeadLetter, ReconciliationResult
from schemas.rules import BREAK_STATUSES, STATUSES

RESULTS_FILE = "results.parquet"
DAILY_TOTALS_FILE = "daily_totals.parquet"
DEAD_LETTERS_FILE = "dead_letters.jsonl"
MANIFEST = "manifest.json"
DATA_FILES = (RESULTS_FILE, DAILY_TOTALS_FILE, DEAD_LETTERS_FILE)
OK = "OK"
INPUTS_CHANGED = "inputs changed: re-run"

_DATE_DIR = re.compile(r"date=(\d{4}-\d{2}-\d{2})")
_LEFTOVER_DIR = re.compile(r"\.date=(\d{4}-\d{2}-\d{2})\.(tmp|old)-(\d+)")
WINDOW_COUNTS = ("read", "accepted", "rejected", "deduplicated")


@dataclass
class BackfillReport:
    output_dir: str
    manifests: Dict[str, dict]   # date -> its manifest.json
    dates: pd.DataFrame          # one row per date (`per_date_table`)
    results: pd.DataFrame        # every date's results.parquet, `date` first
    daily_totals: pd.DataFrame   # every date's daily_totals.parquet, `date` first
    dead_letters: pd.DataFrame   # every date's dead_letters.jsonl, `date` first
    leftovers: List[str] = field(default_factory=list)  # `.date=D.tmp-*` / `.old-*` directories


# ------------------------------------------------------------------ reading


def date_dirs(output_dir: str) -> Dict[str, str]:
    """{date: path} of the published `date=YYYY-MM-DD` directories, in date order."""
    found = {}
    for path in glob.glob(os.path.join(glob.escape(output_dir), "date=*")):
        match = _DATE_DIR.fullmatch(os.path.basename(path))
        if match and os.path.isdir(path):
            found[match.group(1)] = path
    return dict(sorted(found.items()))


def leftover_dirs(output_dir: str) -> List[str]:
    """Names of `.date=D.tmp-<pid>` / `.date=D.old-<pid>` directories: a crashed (or running) backfill's
    debris, which the next `paybeam backfill` on this output removes (or restores, for a lone `.old`)."""
    return sorted(name for name in os.listdir(output_dir)
                  if _LEFTOVER_DIR.fullmatch(name) and os.path.isdir(os.path.join(output_dir, name)))


def read_manifests(output_dir: str) -> Dict[str, dict]:
    """{date: manifest} of every published date (a directory without a readable manifest is left out)."""
    manifests = {}
    for day, path in date_dirs(output_dir).items():
        try:
            with open(os.path.join(path, MANIFEST), encoding="utf-8") as handle:
                manifests[day] = json.load(handle)
        except (OSError, ValueError):
            continue
    return manifests


def _with_date(frame: pd.DataFrame, day: str) -> pd.DataFrame:
    frame = frame.copy()
    frame.insert(0, "date", day)
    return frame


def _concat(frames: List[pd.DataFrame], record_type) -> pd.DataFrame:
    if not frames:
        return _with_date(records_frame([], record_type), "").iloc[0:0]
    return pd.concat(frames, ignore_index=True)


def _dead_letters(path: str) -> pd.DataFrame:
    with open(path, encoding="utf-8") as handle:
        return records_frame([json.loads(line) for line in handle if line.strip()], DeadLetter)


def per_date_table(manifests: Dict[str, dict]) -> pd.DataFrame:
    """One row per date from its manifest: as_of, rows of each data file, rows per status (every status any
    date has, in the order of docs/formats.md (Statuses)), break rows, and per input what the run read / accepted / rejected /
    deduplicated over its whole window (the date's partition and its neighbours)."""
    present = {status for manifest in manifests.values() for status in manifest["counts"]["statuses"]}
    statuses = [s for s in STATUSES if s in present] + sorted(present - set(STATUSES))
    rows = []
    for day, manifest in sorted(manifests.items()):
        counts = manifest["counts"]
        row = {"date": day, "as_of": manifest["as_of"], "results_rows": counts["results_rows"],
               "daily_totals_rows": counts["daily_totals_rows"], "dead_letters": counts["dead_letters_rows"]}
        row.update({status: counts["statuses"].get(status, 0) for status in statuses})
        row["breaks"] = sum(n for status, n in counts["statuses"].items() if status in BREAK_STATUSES)
        for name in (PAYMENTS, SETTLEMENTS):
            window = counts["window_inputs"].get(name, {})
            for key in WINDOW_COUNTS:
                row[f"{name}_{key}"] = window.get(key)
        rows.append(row)
    columns = (["date", "as_of", "results_rows", "daily_totals_rows", "dead_letters", *statuses, "breaks"]
               + [f"{name}_{key}" for name in (PAYMENTS, SETTLEMENTS) for key in WINDOW_COUNTS])
    table = pd.DataFrame(rows, columns=columns)
    for column in columns[2:]:
        table[column] = table[column].astype("Int64")
    return table


def break_status_columns(table: pd.DataFrame) -> List[str]:
    """The break statuses that are columns of a `per_date_table`, in the order of docs/formats.md (Statuses)."""
    return [column for column in table.columns if column in BREAK_STATUSES]


def load_backfill(output_dir: str) -> BackfillReport:
    """Reads every published date of a backfill output directory."""
    manifests = read_manifests(output_dir)
    results, totals, letters = [], [], []
    for day in manifests:
        folder = os.path.join(output_dir, f"date={day}")
        results.append(_with_date(records_frame(parquet_rows(os.path.join(glob.escape(folder), RESULTS_FILE)),
                                                ReconciliationResult), day))
        totals.append(_with_date(records_frame(parquet_rows(os.path.join(glob.escape(folder), DAILY_TOTALS_FILE)),
                                               DailyTotal), day))
        letters.append(_with_date(_dead_letters(os.path.join(folder, DEAD_LETTERS_FILE)), day))
    return BackfillReport(
        output_dir=output_dir,
        manifests=manifests,
        dates=per_date_table(manifests),
        results=_concat(results, ReconciliationResult),
        daily_totals=_concat(totals, DailyTotal),
        dead_letters=_concat(letters, DeadLetter),
        leftovers=leftover_dirs(output_dir),
    )


# ------------------------------------------------------------------ checks


def _open(path: str):
    if "://" not in path:
        return open(path, "rb")
    from apache_beam.io.filesystem import CompressionTypes
    from apache_beam.io.filesystems import FileSystems

    return FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)


def _fingerprint(path: str) -> Optional[Tuple[int, str]]:
    """(size, sha256) of a file (local, or on any Beam filesystem); None when it is gone or unreadable."""
    digest, size = hashlib.sha256(), 0
    try:
        with _open(path) as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                size += len(chunk)
                digest.update(chunk)
    except Exception:  # noqa: BLE001 — any filesystem's "not found" / "no access"
        return None
    return size, digest.hexdigest()


def installed_versions() -> Dict[str, str]:
    import apache_beam

    from pipelines.version import paybeam_version

    return {"paybeam": paybeam_version(), "beam": apache_beam.__version__}


def _check_outputs(folder: str, manifest: dict) -> str:
    problems = []
    for name in DATA_FILES:
        recorded = (manifest.get("outputs") or {}).get(name)
        found = _fingerprint(os.path.join(folder, name))
        if recorded is None:
            problems.append(f"{name} not in the manifest")
        elif found is None:
            problems.append(f"{name} missing")
        elif found[1] != recorded.get("sha256"):
            problems.append(f"{name} modified (sha256 differs)")
    return OK if not problems else "outputs changed: " + "; ".join(problems)


def _check_inputs(manifest: dict) -> str:
    problems = []
    for name, files in sorted((manifest.get("inputs") or {}).items()):
        for item in files:
            found = _fingerprint(item["path"])
            if found is None:
                problems.append(f"{name} {item['path']} missing")
            elif found[0] != item["size"]:
                problems.append(f"{name} {item['path']} size {item['size']} -> {found[0]}")
            elif found[1] != item["sha256"]:
                problems.append(f"{name} {item['path']} modified (sha256 differs)")
    return OK if not problems else f"{INPUTS_CHANGED} ({'; '.join(problems)})"


def _check_versions(manifest: dict, installed: Dict[str, str]) -> str:
    problems = [f"{name} {manifest.get(f'{name}_version')} -> {installed[name]} installed"
                for name in ("paybeam", "beam") if manifest.get(f"{name}_version") != installed[name]]
    if not problems:
        return OK
    return "versions differ: " + "; ".join(problems) + " (re-run with --force for the new version's answers)"


def manifest_checks(output_dir: str) -> pd.DataFrame:
    """One row per date (published, or only found as leftover): are the data files the ones its manifest
    describes (sha256), are its input files unchanged (path, size, sha256: else "inputs changed: re-run"),
    were they written by the installed paybeam and Beam, and is there a `.tmp-`/`.old-` leftover?

    `ok` is True when every check is OK and no leftover is there. A new file matching a template is not
    seen here (the manifest records files, not templates); the next backfill run notices it.
    """
    installed = installed_versions()
    folders = date_dirs(output_dir)
    leftovers: Dict[str, List[str]] = {}
    for name in leftover_dirs(output_dir):
        leftovers.setdefault(_LEFTOVER_DIR.fullmatch(name).group(1), []).append(name)
    rows = []
    for day in sorted(set(folders) | set(leftovers)):
        folder = folders.get(day)
        manifest = None
        if folder is not None:
            try:
                with open(os.path.join(folder, MANIFEST), encoding="utf-8") as handle:
                    manifest = json.load(handle)
            except (OSError, ValueError):
                manifest = None
        if folder is None:
            outputs = inputs = versions = f"no date={day} directory"
        elif manifest is None:
            outputs = inputs = versions = "no readable manifest.json"
        else:
            outputs = _check_outputs(folder, manifest)
            inputs = _check_inputs(manifest)
            versions = _check_versions(manifest, installed)
        left = ", ".join(leftovers.get(day, []))
        rows.append({"date": day, "outputs": outputs, "inputs": inputs, "versions": versions, "leftovers": left,
                     "ok": outputs == inputs == versions == OK and not left})
    return pd.DataFrame(rows, columns=["date", "outputs", "inputs", "versions", "leftovers", "ok"])
