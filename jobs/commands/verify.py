"""`cityflow verify`: correctness checks over a finished lake, each a flag and one function
returning a CheckOutcome; exit 1 if any selected check fails (no flag = every check).

    cityflow verify --counts     good + quarantined == consumed per topic partition
    cityflow verify --windows [--since T --until T]
                                 every final window == its DuckDB recompute from raw events

To add a check: write `check_<name>(settings, args) -> CheckOutcome` and list it in CHECKS.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from contracts.lake import Lake
from contracts.settings import Settings, load_settings


@dataclass
class CheckOutcome:
    """What a check found: pass/fail, a table to print and a one-line summary."""

    name: str
    ok: bool
    table: str
    summary: str


def format_rows(header: list[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain text table, numbers right-aligned."""
    cells = [header] + [[f"{v:,}" if isinstance(v, int) else str(v) for v in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    numeric = [all(isinstance(r[i], int) for r in rows) and bool(rows) for i in range(len(header))]
    lines = []
    for j, r in enumerate(cells):
        lines.append("  ".join(c.rjust(w) if numeric[i] and j else c.ljust(w)
                               for i, (c, w) in enumerate(zip(r, widths))).rstrip())
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def check_counts(settings: Settings, args: argparse.Namespace | None = None) -> CheckOutcome:
    """The accounting invariant: per topic partition, raw rows + quarantined rows == records
    consumed (from the landing checkpoints), i.e. nothing lost and nothing landed twice."""
    from warehouse.accounting import partition_accounts

    accounts = partition_accounts(Lake(settings.lake))
    rows = [[a.topic, a.partition, a.committed_offset, a.consumed, a.raw_rows, a.quarantined_rows,
             a.landed - a.consumed, "ok" if a.balanced else "UNBALANCED"] for a in accounts]
    table = format_rows(["topic", "partition", "committed", "consumed", "good", "quarantined",
                         "difference", "status"], rows)
    bad = [a for a in accounts if not a.balanced]
    consumed = sum(a.consumed for a in accounts)
    quarantined = sum(a.quarantined_rows for a in accounts)
    if not accounts:
        return CheckOutcome("counts", True, "", f"counts: no landing checkpoints in {settings.lake} (nothing consumed yet)")
    summary = (f"counts: {len(accounts)} partitions, {consumed:,} consumed = "
               f"{consumed - quarantined:,} good + {quarantined:,} quarantined" if not bad else
               f"counts: {len(bad)} of {len(accounts)} partitions UNBALANCED: "
               + ", ".join(f"{a.topic}[{a.partition}] {a.landed - a.consumed:+,}" for a in bad))
    return CheckOutcome("counts", not bad, table, summary)


def check_windows(settings: Settings, args: argparse.Namespace | None = None) -> CheckOutcome:
    """Every final streamed window (latest version) equals its recompute from the raw lake, and
    no final window is missing on either side (warehouse/verify.py)."""
    from contracts.registry import CONTRACTS
    from contracts.windows import window_geometry
    from warehouse.verify import verify_windows

    since = getattr(args, "since", None)
    until = getattr(args, "until", None)
    result = verify_windows(settings.lake, {s: window_geometry(s, settings) for s in CONTRACTS},
                            since, until)
    rows = [[c.source, c.windows_checked, len(c.mismatches), "ok" if c.ok else "MISMATCH"]
            for c in result.checks]
    table = format_rows(["source", "windows", "mismatches", "status"], rows)
    details = [c.mismatches.head(20).to_string(index=False) for c in result.checks if not c.ok]
    if details:
        table += "\n\nfirst mismatches:\n" + "\n".join(details)
    checked = sum(c.windows_checked for c in result.checks)
    summary = (f"windows: {checked:,} windows checked, 0 mismatches" if result.ok else
               f"windows: {result.mismatch_count:,} mismatches in {checked:,} windows")
    return CheckOutcome("windows", result.ok, table, summary)


def _utc(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an ISO date or time, e.g. 2026-11-25T08:00, got {text!r}") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


# name -> (check, help). Order is the order they run and print in.
CHECKS: dict[str, tuple[Callable[[Settings, argparse.Namespace | None], CheckOutcome], str]] = {
    "counts": (check_counts, "good + quarantined == consumed per topic partition"),
    "windows": (check_windows, "every final window equals its DuckDB recompute from raw events"),
}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("verify", help="check a lake's invariants (exit 1 if any fails)",
                       description="Run correctness checks over the lake; with no flag, all of them.")
    for name, (_, help_text) in CHECKS.items():
        p.add_argument(f"--{name}", action="store_true", help=help_text)
    p.add_argument("--since", type=_utc, default=None, help="windows starting at or after (UTC)")
    p.add_argument("--until", type=_utc, default=None, help="windows starting at or before (UTC)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = load_settings()
    selected = [n for n in CHECKS if getattr(args, n, False)] or list(CHECKS)
    ok = True
    for name in selected:
        outcome = CHECKS[name][0](settings, args)
        if outcome.table:
            print(outcome.table)
        print(outcome.summary)
        ok = ok and outcome.ok
    return 0 if ok else 1
