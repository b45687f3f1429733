"""`cityflow dlq list|show|replay`: inspect quarantined (dead-lettered) records and, after a
fix, replay them byte for byte to their source topic (each record at most once; `key_mismatch`
records keyed by their entity id)."""

from __future__ import annotations

import argparse
import json
import sys

from contracts.registry import CONTRACTS
from contracts.schema import Reason
from contracts.settings import load_settings
from jobs.commands import help_when_bare


def _filters(p: argparse.ArgumentParser) -> None:
    p.add_argument("--source", choices=list(CONTRACTS), default=None, help="only this source")
    p.add_argument("--reason", action="append", default=[], choices=[r.value for r in Reason],
                   help="only this reason code (repeatable)")
    p.add_argument("--since", default=None,
                   help="received at or after: YYYY-MM-DD[THH:MM] or a span ago like 90m, 24h, 7d")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("dlq", help="inspect and replay quarantined (dead-lettered) records")
    actions = p.add_subparsers(dest="dlq_action", metavar="ACTION")

    ls = actions.add_parser("list", help="counts by source and reason, then the matching records")
    _filters(ls)
    ls.add_argument("--limit", type=int, default=20, help="records to list (default 20; 0 = counts only)")
    ls.set_defaults(func=run_list)

    show = actions.add_parser("show", help="one quarantined record in full")
    show.add_argument("record", help="TOPIC:PARTITION:OFFSET, as printed by `dlq list`")
    show.add_argument("--full", action="store_true", help="print the whole value, however long")
    show.set_defaults(func=run_show)

    rp = actions.add_parser(
        "replay", help="produce quarantined records' original bytes back to their source topic",
        description="Replay quarantined records to their source topic after a fix (a widened "
        "contract, a corrected limit). Records already replayed are skipped; `duplicate` rejects "
        "only with --reason duplicate or by reference. `key_mismatch` rejects (null key or not "
        "the entity id) are re-sent keyed by the entity id in their value, so they land on "
        "their entity's partition.")
    _filters(rp)
    rp.add_argument("records", nargs="*", help="TOPIC:PARTITION:OFFSET references (default: all matching)")
    rp.add_argument("--dry-run", action="store_true", help="print what would be replayed, send nothing")
    rp.add_argument("--bootstrap", default=None, help="Kafka host:port (default CITYFLOW_KAFKA_BOOTSTRAP)")
    rp.set_defaults(func=run_replay)

    help_when_bare(p)


def _make_filter(args: argparse.Namespace, refs: tuple = ()):  # type: ignore[no-untyped-def]
    from jobs.dlq import QuarantineFilter
    from jobs.validation import parse_since

    since = parse_since(args.since) if getattr(args, "since", None) else None
    return QuarantineFilter(source=getattr(args, "source", None), reasons=tuple(getattr(args, "reason", ()) or ()),
                            since=since, refs=refs)


def run_list(args: argparse.Namespace) -> int:
    from jobs.commands.verify import format_rows
    from jobs.dlq import (
        DlqError,
        RecordRef,
        quarantine_counts,
        read_quarantine,
        replayed_refs,
        value_preview,
    )

    settings = load_settings()
    try:
        flt = _make_filter(args)
    except (DlqError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    counts = quarantine_counts(settings.lake, flt)
    if not counts:
        print(f"no quarantined records in {settings.lake} match")
        return 0
    print(format_rows(["source", "reason", "records"], [list(c) for c in counts]))
    print(f"total: {sum(c[2] for c in counts):,}")
    if args.limit > 0:
        table = read_quarantine(settings.lake, flt, with_value=True, limit=args.limit)
        done = replayed_refs(settings.lake)
        rows = []
        for r in table.to_pylist():
            ref = RecordRef(r["source_topic"], r["kafka_partition"], r["kafka_offset"])
            rows.append([str(ref), r["reason"], r["field"] or "", f"{r['received_at']:%Y-%m-%d %H:%M:%S}",
                         "yes" if ref in done else "", value_preview(r["value"], 50)])
        print()
        print(format_rows(["record", "reason", "field", "received_at (UTC)", "replayed", "value"], rows))
        if table.num_rows == args.limit:
            print(f"(first {args.limit}; --limit N for more)")
    return 0


def run_show(args: argparse.Namespace) -> int:
    from jobs.dlq import (
        DlqError,
        QuarantineFilter,
        RecordRef,
        hexdump,
        read_quarantine,
        replayed_refs,
    )

    settings = load_settings()
    try:
        ref = RecordRef.parse(args.record)
    except DlqError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    rows = read_quarantine(settings.lake, QuarantineFilter(refs=(ref,))).to_pylist()
    if not rows:
        print(f"error: no quarantined record {ref} in {settings.lake}", file=sys.stderr)
        return 1
    r = rows[0]
    replay = replayed_refs(settings.lake).get(ref)
    print(f"record       {ref}")
    print(f"source       {r['source']}")
    print(f"reason       {r['reason']}  ({Reason(r['reason']).description})")
    print(f"field        {r['field'] or '-'}")
    print(f"detail       {r['detail']}")
    print(f"received_at  {r['received_at']:%Y-%m-%d %H:%M:%S.%f}"[:-3] + "Z")
    print(f"replayed     {f'yes, by {replay[0]} at {replay[1]:%Y-%m-%d %H:%M:%S}Z' if replay else 'no'}")
    key = r["key"]
    print(f"key          {key.decode('utf-8', 'backslashreplace') if key is not None else '(null)'}")
    value = r["value"]
    if value is None:
        print("value        (null)")
        return 0
    print(f"value        {len(value):,} bytes")
    limit = None if args.full else 4096
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        print(hexdump(value, limit=len(value) if limit is None else 256))
        return 0
    try:
        text = json.dumps(json.loads(text), indent=2, ensure_ascii=False) if len(value) <= 65536 else text
    except (ValueError, RecursionError):
        pass
    shown = text if limit is None else text[:limit]
    print(shown.encode("utf-8", "backslashreplace").decode("utf-8"))
    if limit is not None and len(text) > limit:
        print(f"… {len(text) - limit:,} more characters (--full to print all)")
    return 0


def run_replay(args: argparse.Namespace) -> int:
    from jobs.commands.verify import format_rows
    from jobs.dlq import DlqError, RecordRef, plan_replay, replay
    from streams.broker import kafka_client_config, quiet_kafka_client_logs

    settings = load_settings()
    try:
        refs = tuple(RecordRef.parse(r) for r in args.records)
        flt = _make_filter(args, refs)
    except (DlqError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    plan = plan_replay(settings.lake, flt)
    for ref, why in plan.already_replayed + plan.skipped:
        print(f"skip {ref}: {why}")
    n = plan.records.num_rows
    if n == 0:
        print("nothing to replay")
        return 0
    by_reason: dict[tuple[str, str], int] = {}
    for topic, reason in zip(plan.records["source_topic"].to_pylist(), plan.records["reason"].to_pylist()):
        by_reason[(topic, reason)] = by_reason.get((topic, reason), 0) + 1
    if args.dry_run:
        print(format_rows(["topic", "reason", "records"], [[t, r, c] for (t, r), c in sorted(by_reason.items())]))
        print(f"dry run: would replay {n:,} records")
        return 0
    if not args.verbose:
        quiet_kafka_client_logs()
    result = replay(settings.lake, plan, kafka_client_config(settings, args.bootstrap))
    rows = [[f"{r['source_topic']}:{r['kafka_partition']}:{r['kafka_offset']}", r["reason"],
             f"{r['source_topic']}:{r['new_partition']}:{r['new_offset']}"] for r in result.sent.to_pylist()]
    if rows:
        print(format_rows(["replayed record", "was rejected as", "now at"], rows))
    for ref, why in result.failed:
        print(f"FAILED {ref}: {why}", file=sys.stderr)
    print(f"replay {result.replay_id}: sent {result.sent.num_rows:,} of {n:,} records"
          + (f", {len(result.failed)} failed (not logged; run the replay again)" if result.failed else "")
          + "; logged so they are never replayed twice")
    return 1 if result.failed else 0
