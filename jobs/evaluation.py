"""Scoring of detector alerts against injected-incident labels (pure; no broker): per kind
precision, recall, F1, median time-to-detect, and false alerts per 1,000 device-hours.

Rules. An alert *matches* a label of its kind on the same entity when its window_start lies
in [label start - `lead_s`, label end]: the window that holds the incident's first reading
may start up to one window before it (15 min for lighting), and a silence is dated from the
end of the last window before it. A label is found (TP) when at least one alert matches it,
missed (FN) otherwise; further matches of a found label are counted as `duplicates`, not as
false positives (the NAB window rule, streams/detectors/nab.py, which also gives precision,
recall and F1 here). An alert that matches no label of its kind is a false positive (FP),
unless it falls on a labelled incident of another kind on the same entity (a lamp burning
in daylight also draws more energy): those are counted as `collateral`, not FP, since the
device really misbehaved. Time-to-detect = first matching alert's window_start - label
start (can be slightly negative: the window began before the incident).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from streams.detectors.nab import Counts
from streams.incidents import IncidentLabel

LEAD_S = 900.0  # the longest default window (lighting, 15 min)


@dataclass(frozen=True)
class AlertRow:
    """The part of an anomaly row that scoring needs (`detected_at`, epoch ms, when known: the
    watermark at which the worker raised it)."""

    kind: str
    entity: str
    window_start: int
    detected_at: int | None = None


@dataclass(frozen=True)
class KindScore(Counts):
    """One kind's result: counts, detection delays (minutes) and the extras."""

    kind: str
    labels: int
    alerts: int
    tp: int
    fp: int
    fn: int
    duplicates: int
    collateral: int
    delays_min: tuple[float, ...]

    @property
    def median_ttd_min(self) -> float:
        return float(np.median(self.delays_min)) if self.delays_min else float("nan")


def alert_rows(rows: Iterable[dict]) -> list[AlertRow]:
    """AlertRow from anomaly dicts (e.g. `anomalies.to_pylist()`), times as epoch ms."""
    return [AlertRow(r["kind"], r["entity"], int(r["window_start"]),
                     int(r["detected_at"]) if r.get("detected_at") is not None else None) for r in rows]


def _matches(alert: AlertRow, label: IncidentLabel, lead_ms: float) -> bool:
    return (alert.entity == label.entity
            and label.start_ms - lead_ms <= alert.window_start <= label.end_ms)


def score_incidents(labels: Sequence[IncidentLabel], alerts: Sequence[AlertRow],
                    kinds: Sequence[str] | None = None, lead_s: float = LEAD_S) -> list[KindScore]:
    """Per-kind scores of `alerts` against `labels` (see module doc). `kinds` defaults to the
    kinds of the labels and alerts, sorted.

        >>> lb = IncidentLabel("wifi.latency", "ap-1", 0, 600_000, "wifi")
        >>> s, = score_incidents([lb], [AlertRow("wifi.latency", "ap-1", 300_000)])
        >>> (s.tp, s.fp, s.fn, s.median_ttd_min)
        (1, 0, 0, 5.0)
    """
    lead_ms = lead_s * 1000.0
    kinds = sorted({lb.kind for lb in labels} | {a.kind for a in alerts}) if kinds is None else kinds
    scores = []
    for kind in kinds:
        own = [lb for lb in labels if lb.kind == kind]
        others = [lb for lb in labels if lb.kind != kind]
        mine = sorted((a for a in alerts if a.kind == kind), key=lambda a: a.window_start)
        first: dict[int, int] = {}  # label index -> first matching alert's window_start
        fp = duplicates = collateral = 0
        for a in mine:
            hit = [j for j, lb in enumerate(own) if _matches(a, lb, lead_ms)]
            if hit:
                new = [j for j in hit if j not in first]
                for j in new:
                    first[j] = a.window_start
                duplicates += 0 if new else 1
            elif any(_matches(a, lb, lead_ms) for lb in others):
                collateral += 1
            else:
                fp += 1
        delays = tuple((first[j] - own[j].start_ms) / 60000.0 for j in sorted(first))
        scores.append(KindScore(kind, len(own), len(mine), len(first), fp, len(own) - len(first),
                                duplicates, collateral, delays))
    return scores


def false_alerts_per_1000_device_hours(alerts: int, device_hours: float) -> float:
    """Alerts of an incident-free run per 1,000 device-hours (every alert there is false)."""
    if device_hours <= 0:
        raise ValueError(f"device_hours must be > 0, got {device_hours}")
    return alerts / device_hours * 1000.0


def device_hours(first_last_ms: dict[str, tuple[int, int]]) -> float:
    """Sum over devices of (last reading - first reading) in hours."""
    return sum((b - a) / 3_600_000.0 for a, b in first_last_ms.values())


def format_table(scores: Sequence[KindScore]) -> str:
    """The per-kind table: labels, alerts, TP, FP, FN, dup, coll, P, R, F1, median TTD."""
    head = (f"{'kind':28s} {'labels':>6s} {'alerts':>6s} {'TP':>3s} {'FP':>3s} {'FN':>3s} {'dup':>3s} "
            f"{'coll':>4s} {'P':>5s} {'R':>5s} {'F1':>5s} {'TTD min':>8s}")
    lines = [head, "-" * len(head)]
    for s in scores:
        lines.append(f"{s.kind:28s} {s.labels:6d} {s.alerts:6d} {s.tp:3d} {s.fp:3d} {s.fn:3d} "
                     f"{s.duplicates:3d} {s.collateral:4d} {s.precision:5.2f} {s.recall:5.2f} "
                     f"{s.f1:5.2f} {s.median_ttd_min:8.1f}")
    return "\n".join(lines)


@dataclass(frozen=True)
class Finding:
    """Whether one injected incident was found: the label, and of the alerts of its kind that
    match it (the rule of `score_incidents`), the one raised first."""

    label: IncidentLabel
    alert: AlertRow | None

    @property
    def found(self) -> bool:
        return self.alert is not None

    @property
    def detect_delay_min(self) -> float | None:
        """Minutes of event time from the incident's start to the alert's `detected_at` (its
        window_start when detected_at is unknown); None when not found."""
        if self.alert is None:
            return None
        at = self.alert.detected_at if self.alert.detected_at is not None else self.alert.window_start
        return (at - self.label.start_ms) / 60000.0


def incident_findings(labels: Sequence[IncidentLabel], alerts: Sequence[AlertRow],
                      lead_s: float = LEAD_S) -> tuple[list[Finding], list[AlertRow]]:
    """Per label (in label order) whether an alert of its kind found it and how fast, and the
    alerts that match no label of their kind (the rest of what the detectors raised).

        >>> lb = IncidentLabel("traffic.stuck", "tdet-1", 0, 2_400_000, "traffic")
        >>> (f,), rest = incident_findings([lb], [AlertRow("traffic.stuck", "tdet-1", 0, 960_000)])
        >>> f.found, f.detect_delay_min, rest
        (True, 16.0, [])
    """
    lead_ms = lead_s * 1000.0
    by_time = sorted(alerts, key=lambda a: (a.detected_at if a.detected_at is not None else a.window_start,
                                            a.window_start, a.kind, a.entity))
    findings = []
    for lb in labels:
        first = next((a for a in by_time if a.kind == lb.kind and _matches(a, lb, lead_ms)), None)
        findings.append(Finding(lb, first))
    unmatched = [a for a in by_time
                 if not any(a.kind == lb.kind and _matches(a, lb, lead_ms) for lb in labels)]
    return findings, unmatched


def format_findings(findings: Sequence[Finding], unmatched: Sequence[AlertRow], speedup: float | None = None) -> str:
    """The table `cityflow demo` prints: kind, entity, start (UTC), found, time to detect (event
    time; with `speedup`, also the wall-clock equivalent of a replay at that speed)."""
    from datetime import UTC, datetime

    head = f"{'kind':28s} {'entity':14s} {'start (UTC)':11s} {'found':5s}  time to detect"
    lines = [head, "-" * (len(head) + 10)]
    for f in findings:
        start = datetime.fromtimestamp(f.label.start_ms / 1000, UTC).strftime("%H:%M")
        delay = f.detect_delay_min
        if delay is None:
            ttd = "-"
        else:
            ttd = f"{delay:.0f} min"
            if speedup:
                ttd += f" (~{max(delay, 0.0) * 60 / speedup:.0f} s at {speedup:g}x)"
        lines.append(f"{f.label.kind:28s} {f.label.entity:14s} {start:11s} {'yes' if f.found else 'NO':5s}  {ttd}")
    found = sum(f.found for f in findings)
    lines.append(f"{found} of {len(findings)} injected incidents found; {len(unmatched)} other alert(s) "
                 "on no injected incident")
    return "\n".join(lines)
